"""Probes inside a stream worker, for ``python -m bench.memory_probe --inside`` (which puts this folder on the
worker's ``PYTHONPATH``); each is on only where its variable is set, and writes to ``$MEMPROBE_DIR/<pid>.*``:

- ``MEMPROBE_DIR``: every 10 s glibc's ``mallinfo2`` (bytes the malloc arenas hold, mmapped chunks, in use, free
  inside the arenas, the untrimmed top) and the RSS to ``<pid>.tsv``; and the sum over every RocksDB database of
  Faust's stores of its memtables, table readers, block cache, live versions and SST bytes to ``<pid>.rocks.tsv``.
- ``MEMPROBE_TRIM=1``: ``malloc_trim(0)`` before each sample (returns the arenas' free pages).
- ``MEMPROBE_GC=1``: a full collection every 10 s that keeps what it finds; the garbage's types go to
  ``<pid>.gc.txt`` before it is freed.
- ``MEMPROBE_TRACEMALLOC=N``: trace Python's allocations (objects, and numpy's buffers) with N frames from
  ``MEMPROBE_TRACEMALLOC_AFTER`` seconds on (120: past the start, which tracing would slow several times), and
  every 60 s write to ``<pid>.tracemalloc.txt`` the 15 sites holding the most of what was allocated since then
  and is still alive: where the live Python memory that keeps growing is.
- ``MEMPROBE_STANDBY_BUFFER=N``: the tables' standby batch (``streams.tables.STANDBY_BUFFER``), to compare it.
"""

import collections
import contextlib
import ctypes
import gc
import os
import sys
import threading
import time
import weakref

MB = 2**20
OUT = os.environ.get("MEMPROBE_DIR")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def every(seconds: float, name: str, header: str | None, sample) -> None:
    def loop() -> None:
        started = time.monotonic()
        with open(os.path.join(OUT, f"{os.getpid()}.{name}"), "a", buffering=1) as f:
            if header:
                f.write(header + "\n")
            while True:
                time.sleep(seconds)
                f.write(f"{time.monotonic() - started:.0f}\t{sample()}\n")

    threading.Thread(target=loop, daemon=True, name=f"memprobe-{name}").start()


def malloc_sample() -> str:
    if os.environ.get("MEMPROBE_TRIM") == "1":
        LIBC.malloc_trim(0)
    m = LIBC.mallinfo2()
    with open("/proc/self/statm") as s:
        rss = int(s.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return "\t".join(f"{v / MB:.1f}" for v in (m.arena, m.hblkhd, m.uordblks, m.fordblks, m.keepcost, rss))


ROCKS_PROPS = (
    "rocksdb.cur-size-all-mem-tables",
    "rocksdb.estimate-table-readers-mem",
    "rocksdb.block-cache-usage",
    "rocksdb.num-live-versions",
    "rocksdb.total-sst-files-size",
)


# Faust's RocksDB stores, recorded as they are made: the worker freezes its heap out of the collector's reach
# after each model load (streams.agents.loading), and gc.get_objects() does not list frozen objects.
STORES: "weakref.WeakSet[object]" = weakref.WeakSet()


def record_stores() -> None:
    from faust.stores import rocksdb

    made = rocksdb.Store.__init__

    def init(self, *args, **kwargs):
        made(self, *args, **kwargs)
        STORES.add(self)

    rocksdb.Store.__init__ = init


def rocks_sample() -> str:
    dbs = [db for s in list(STORES) for db in list(s._dbs.values())]
    totals = [0] * len(ROCKS_PROPS)
    for db in dbs:
        for i, prop in enumerate(ROCKS_PROPS):
            with contextlib.suppress(Exception):  # a database closing under a rebalance
                value = db.property_int_value(prop) or 0
                # every database reports the worker's one block cache (streams.faust_adapter.RocksDBMemory)
                totals[i] = max(totals[i], value) if prop == "rocksdb.block-cache-usage" else totals[i] + value
    return "\t".join([str(len(dbs))] + [str(v) if i == 3 else f"{v / MB:.1f}" for i, v in enumerate(totals)])


def gc_sample() -> str:
    gc.set_debug(gc.DEBUG_SAVEALL)
    found = gc.collect()
    gc.set_debug(0)
    count, size = collections.Counter(), collections.Counter()
    for o in gc.garbage:
        kind = f"{type(o).__module__}.{type(o).__qualname__}"
        count[kind] += 1
        size[kind] += sys.getsizeof(o)
    gc.garbage.clear()
    gc.collect()
    top = ", ".join(f"{k}={count[k]}/{b / MB:.2f}MB" for k, b in size.most_common(12))
    return f"collected={found} {sum(size.values()) / MB:.2f}MB {top}"


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        path = path.rsplit(marker, 1)[-1]
    return path


def tracemalloc_sample() -> str:
    import tracemalloc

    if not tracemalloc.is_tracing():
        return "not tracing yet"
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snap.statistics("traceback")
    lines = [f"live since tracing began {sum(st.size for st in stats) / MB:.2f}MB in {len(stats)} sites"]
    for stat in stats[:15]:
        where = " <- ".join(f"{_short(f.filename)}:{f.lineno}" for f in reversed(stat.traceback))
        lines.append(f"  {stat.size / MB:+.2f}MB {stat.count:+d} blocks  {where}")
    return "\n".join(lines)


def start_tracing(frames: int, after_s: float) -> None:
    import tracemalloc

    time.sleep(after_s)
    tracemalloc.start(frames)


if OUT:
    LIBC = ctypes.CDLL("libc.so.6")
    LIBC.mallinfo2.restype = MallInfo2
    every(10, "tsv", "t\tarena\thblkhd\tuordblks\tfordblks\tkeepcost\trss", malloc_sample)
    record_stores()
    every(10, "rocks.tsv", "t\tdbs\tmemtables\ttable_readers\tblock_cache\tlive_versions\tsst", rocks_sample)
    if os.environ.get("MEMPROBE_GC") == "1":
        every(10, "gc.txt", None, gc_sample)
    if os.environ.get("MEMPROBE_TRACEMALLOC"):
        frames, after = (
            int(os.environ["MEMPROBE_TRACEMALLOC"]),
            float(os.environ.get("MEMPROBE_TRACEMALLOC_AFTER", 120)),
        )
        threading.Thread(target=start_tracing, args=(frames, after), daemon=True, name="memprobe-trace").start()
        every(60, "tracemalloc.txt", None, tracemalloc_sample)
    if os.environ.get("MEMPROBE_STANDBY_BUFFER"):
        import streams.tables

        streams.tables.STANDBY_BUFFER = int(os.environ["MEMPROBE_STANDBY_BUFFER"])
