"""The last applied offset of each input partition, kept in a table so that "no event lost" does not depend on
Faust's consumer commits.

Whether one event was applied is decided per key, not here: each table value an agent writes holds the position
of the last event applied to it per input partition (:func:`source_position`; a profile, the history reference of
its request), in the same write as the event's effect, so the effect and the record that it happened reach the
changelog together. The per-partition offset
below is written only once the batch's table writes are on the broker (:func:`streams.faust_adapter.flush`): it
never runs ahead of the stored values (an event it passes over is in them), and a kill before it is written only
replays events that the values then skip.

Faust 0.15 acks an event it skips without running the agent (flow control off during a rebalance or a stop, a
message of an older consumer generation), so its committed offset can pass events the agent never applied
(faust-streaming #216, #221, #223, #312). The agent stores, per input partition, the offset it has applied in
the ``applied_offsets`` table, in the same agent step as the state it changed (the table's changelog partition
is the event's, so it is restored with that state). The :class:`AppliedOffsets` guard then

- passes over an event at or below the stored offset (applied before: after a restart Faust re-delivers from
  its own, older, commit), and
- when an event arrives *past* the stored offset + 1 (Faust committed past events never applied), seeks the
  consumer back to the stored offset + 1 and drops what arrives until that event comes round again;
- from a timer (:meth:`AppliedOffsets.watch`), when the consumer has read past the stored offset + 1 while the
  agent was idle since the last check (every event Faust fetched was skipped, none reached the agent), seeks
  back the same way.

A seek alone does not bring the event back for sure. Faust's consumer drops every fetched record below the last
offset it handed to the streams (its read offset); a seek sets that read offset to the seek's offset, but records
fetched *before* the seek that Faust hands out *after* it move the read offset forward again, and the re-fetched
records from the seek's offset on are then dropped without reaching the agent. This is what happens when an
agent raises and Faust's supervisor restarts it inside the running worker: ``take_events`` acks the failed
batch, the stream goes on after it, the guard seeks back while the rest of the fetched backlog is still being
handed out, and the partition stalled for good (every later event taken for one "fetched before the seek").
So while a partition is sought back, the guard seeks again

- when an event past the sought offset reaches the agent in a later batch than the one that asked for the seek
  (it was handed out after the seek was asked for, so it may have moved Faust's read offset past the sought
  offset), and
- from the timer, when the agent has been idle for a whole check since the last seek and the event has not come.

A seek again at most re-reads events: those below the next offset to apply are passed over.

A batched agent (``take_events``) admits each event of a batch in order, wraps the batch's work in
:meth:`AppliedOffsets.working`, so a slow batch (a generation) is never taken for skipped events, and records
the batch with :meth:`AppliedOffsets.applied_batch` after its effects.

Input topics are written by plain (non-transactional) producers, so their offsets are contiguous; in case one is
not (a transaction marker, records removed by retention), a seek whose event has not come within ``give_up_s``
asks the broker, on a consumer of its own, for the first record from the sought offset on. Only when that record
is a later one (the sought one is gone) is the seek given up, with an error logged, and processing goes on from
where it is. While the sought record is still there (an overloaded worker that has not fetched it back yet) the
guard seeks again and keeps waiting, and the partition shows as stalled: skipping would lose the event.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import faust
from faust.types import TP, TableT

from streams import metrics
from streams.faust_adapter import read_offset
from streams.kafka.offsets import sought_record_gone
from streams.tables import event_context

log = logging.getLogger(__name__)


@dataclass
class _Seek:
    offset: int
    since: float  # the first seek to this offset: give up after give_up_s
    round: int  # the agent's round (see working()) of the latest seek
    at: float  # the time of the latest seek
    dropped: int = 0


# (topic, partition, offset) -> the first offset a fresh read from there returns (streams.kafka.offsets)
FirstOffsetProbe = Callable[[str, int, int], Awaitable[int | None]]


class AppliedOffsets:
    def __init__(self, app: faust.App, table: TableT, probe: FirstOffsetProbe, give_up_s: float = 60.0) -> None:
        self.app = app
        self.table = table
        self.probe = probe
        self.give_up_s = give_up_s
        self._seeking: dict[TP, _Seek] = {}
        self._start: dict[TP, int] = {}
        self._last_check: dict[TP, tuple[int | None, int | None]] = {}
        self._admitted: dict[TP, int] = {}  # admitted in the current batch, not yet stored
        self._busy = 0
        self._activity = 0  # admits, applies and batches: an idle agent leaves it unchanged
        self._activity_seen = -1
        self._round = 0  # working() blocks entered: the events of a later round were handed out later
        self._watched_at = float("-inf")  # the previous watch() check
        self._progress: dict[TP, tuple[int | None, float]] = {}  # the stored offset, and since when it is so
        self.stalled: set[str] = set()  # "topic:partition" of stalled partitions (see sample_lag)

    @staticmethod
    def _key(tp: TP) -> bytes:
        return f"{tp.topic}:{tp.partition}".encode()

    def stored(self, tp: TP) -> int | None:
        value = self.table.get(self._key(tp))
        return int(value) if value is not None else None

    async def _expected(self, tp: TP) -> int:
        """The next offset to apply: the stored (or admitted in this batch) one + 1, or the partition's first
        offset if none is stored."""
        admitted = self._admitted.get(tp)
        if admitted is not None:  # always past the stored offset: no table read for the rest of the batch
            return admitted + 1
        stored = self.stored(tp)
        if stored is not None:
            return stored + 1
        if tp not in self._start:
            self._start[tp] = (await self.app.consumer.earliest_offsets(tp)).get(tp) or 0
        return self._start[tp]

    async def admit(self, event: faust.EventT) -> bool:
        """Whether the agent should apply ``event`` now (False: applied before, or dropped while seeking)."""
        message = event.message
        tp, offset = message.tp, message.offset
        self._activity += 1
        expected = await self._expected(tp)
        if offset <= expected:
            self._seeking.pop(tp, None)
            if offset == expected:
                self._admitted[tp] = offset
            return offset == expected  # below: applied before (Faust re-delivers from its older commit)
        seek = self._seeking.get(tp)
        # offset > expected: the consumer skipped events that were never applied.
        if seek is None or seek.offset != expected:
            log.warning("gap in %s: next to apply is offset %d, got %d; seeking back", tp, expected, offset)
            await self._seek(tp, expected)
            return False
        if time.monotonic() - seek.since > self.give_up_s:
            first = await self.probe(tp.topic, tp.partition, expected)
            if sought_record_gone(expected, first):
                log.error(
                    "offset %d of %s is no longer on the broker (a read from it starts at %s); going on from %d",
                    expected,
                    tp,
                    first,
                    offset,
                )
                self._seeking.pop(tp, None)
                self._admitted[tp] = offset
                return True
            log.warning(
                "offset %d of %s has not come back %.0f s after a seek, and it is still on the broker; waiting on",
                expected,
                tp,
                time.monotonic() - seek.since,
            )
            seek.since = time.monotonic()
            await self._seek(tp, expected)
            return False
        seek.dropped += 1  # fetched before the seek; it comes round again
        if seek.round != self._round:
            # Handed out after the seek was asked for: it may have moved Faust's read offset past the sought
            # offset, so that the re-fetched events are dropped (see the module's doc). Seek again.
            log.info("%s: offset %d handed out after a seek back to %d; seeking again", tp, offset, expected)
            await self._seek(tp, expected)
        return False

    async def _seek(self, tp: TP, offset: int) -> None:
        """Seek ``tp`` back to ``offset`` (again, if it is being sought back to it already)."""
        now = time.monotonic()
        seek = self._seeking.get(tp)
        if seek is None or seek.offset != offset:
            seek = self._seeking[tp] = _Seek(offset, since=now, round=self._round, at=now)
        seek.round, seek.at = self._round, now
        await self.app.consumer.seek(tp, offset)

    async def watch(self, topic: str) -> None:
        """Run from a timer: a partition of ``topic`` whose consumer has read past the next offset to apply while
        nothing was applied since the last check had its events skipped before the agent saw them (Faust drops
        the messages of an older generation, acking them): seek it back to the next offset to apply. A partition
        sought back whose event has not come while the agent sat idle for a whole check is sought again."""
        consumer = self.app.consumer
        watched_at, self._watched_at = self._watched_at, time.monotonic()
        if self._busy or self._activity != self._activity_seen:
            self._activity_seen = self._activity
            return  # the agent is working, or was since the last check: what it has read may still come
        for tp in consumer.assignment():
            if tp.topic != topic:
                continue
            seek = self._seeking.get(tp)
            if seek is not None:
                if seek.at < watched_at:  # idle for a whole check since the latest seek, and the event not come
                    log.warning("%s: offset %d has not come since a seek back to it; seeking again", tp, seek.offset)
                    await self._seek(tp, seek.offset)
                continue
            read = read_offset(consumer, tp)  # the last offset Faust handed to the streams, None: none yet
            stored = self.stored(tp)
            last, self._last_check[tp] = self._last_check.get(tp), (read, stored)
            if last != (read, stored):
                continue  # progress since the last check (or the first check)
            expected = await self._expected(tp)
            highwater = _highwater(consumer, tp)
            # Faust's read offset is the committed position right after a seek: behind only if more is there.
            behind = highwater is not None and highwater > expected and (read is None or read >= expected)
            if behind:
                log.warning(
                    "%s: read up to offset %s, applied only before %d (end %s); seeking back",
                    tp,
                    read,
                    expected,
                    highwater,
                )
                await self._seek(tp, expected)

    async def sample_lag(self, topic: str, stall_s: float) -> None:
        """Export how far each assigned partition of ``topic`` is behind the worker's own applied offset (not
        Faust's read or committed offset, which can run ahead of what was applied), and mark a partition stalled
        when messages wait and its applied offset has not moved for ``stall_s``. Series of partitions no longer
        assigned are removed."""
        now = time.monotonic()
        consumer = self.app.consumer
        assigned = {tp for tp in consumer.assignment() if tp.topic == topic}
        for tp in assigned:
            highwater = _highwater(consumer, tp)
            if highwater is None:
                continue
            stored = self.stored(tp)
            lag = max(0, highwater - (await self._expected(tp)))
            if tp not in self._progress or self._progress[tp][0] != stored or lag == 0:
                self._progress[tp] = (stored, now)
            stalled = lag > 0 and now - self._progress[tp][1] >= stall_s
            name = f"{tp.topic}:{tp.partition}"
            if stalled and name not in self.stalled:
                log.error(
                    "%s: %d messages wait and the applied offset (%s) has not moved for %.0f s",
                    name,
                    lag,
                    stored,
                    now - self._progress[tp][1],
                )
            (self.stalled.add if stalled else self.stalled.discard)(name)
            metrics.APPLIED_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
            metrics.PARTITION_STALLED.labels(topic=tp.topic, partition=str(tp.partition)).set(int(stalled))
        for tp in [tp for tp in self._progress if tp not in assigned]:
            del self._progress[tp]
            self.stalled.discard(f"{tp.topic}:{tp.partition}")
            for gauge in (metrics.APPLIED_LAG, metrics.PARTITION_STALLED):
                with contextlib.suppress(KeyError):
                    gauge.remove(tp.topic, str(tp.partition))

    def applied(self, event: faust.EventT) -> None:
        """Record ``event``'s offset as applied (inside the agent step, after its effects)."""
        message = event.message
        self.table[self._key(message.tp)] = str(message.offset).encode()
        self._admitted.pop(message.tp, None)
        self._activity += 1

    def applied_batch(self, events: Sequence[faust.EventT]) -> None:
        """Record the last admitted event of each partition in ``events`` as applied, each under its own
        partition (after every effect of the batch)."""
        last: dict[TP, faust.EventT] = {}
        for event in events:
            last[event.message.tp] = event
        for event in last.values():
            with event_context(event):
                self.applied(event)

    @contextmanager
    def working(self) -> Iterator[None]:
        """Mark the agent busy (waiting to start, or applying a batch): the watchdog leaves it alone meanwhile.
        A batch that fails forgets what it admitted, so its events are admitted again when they come round."""
        self._busy += 1
        self._activity += 1
        self._round += 1
        try:
            yield
        except BaseException:
            self._admitted.clear()
            raise
        finally:
            self._busy -= 1
            self._activity += 1


def source_position(event: faust.EventT, prefix: str) -> tuple[str, int]:
    """Where ``event`` sits in its input: ("topic:partition" by the contract's topic name, its full name without
    the settings' topic ``prefix``; offset). A table value stores the position of the last event applied to it
    per source, in the same write as the event's effect (``UserState.positions``), so a replayed event is known to
    be applied whatever this module's per-partition offset says: that offset is only written once the batch's
    table writes are on the broker, so it never runs ahead of them, and it may lag behind them (a kill in between),
    which only replays events the values skip."""
    message = event.message
    return f"{message.topic.removeprefix(prefix)}:{message.partition}", message.offset


def _highwater(consumer, tp: TP) -> int | None:
    """The partition's high watermark, None when unknown or when the partition left the assignment between
    listing it and asking (a rebalance under way: the consumer asserts it is assigned)."""
    try:
        return consumer.highwater(tp)
    except AssertionError:
        return None
