"""Logs that cannot be forged or flooded (lettingo.logsafe; issue 14, item 5).

Unit tests of the escaping formatter and the rate limiter, then the flood itself: a private broker is killed under
a running worker, replay and ``train --watch``, and each may write only a few warning/error lines in the outage.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from lettingo.logsafe import EscapingFormatter, RateLimitFilter, configure_safe_logging, escape_controls, json_formatter
from tests.streams_harness import free_port, private_broker
from trainer.tiny_model import build_tiny_policy

REPO = Path(__file__).resolve().parents[1]
DATASET = (REPO.parent / "shared" / "data" / "ml-latest-small").resolve()


# --- escaping ---------------------------------------------------------------------------------------------------


def _capture(formatter: logging.Formatter, name: str = "lsafe.fmt") -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("a\nFORGED line", "a\\nFORGED line"),
        ("a\r\nWARNING x: forged", "a\\r\\nWARNING x: forged"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("a\u2028b\u2029c\x85d", "a\\u2028b\\u2029c\\x85d"),
        ("tab\there\x00\x7f\x9b\u202e", "tab\\there\\x00\\x7f\\x9b\\u202e"),
    ],
)
def test_one_log_call_writes_one_line(key: str, shown: str) -> None:
    logger, out = _capture(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    logger.warning("dead letter key=%s", key)
    text = out.getvalue()
    assert text.count("\n") == 1 and len(text.splitlines()) == 1  # splitlines also breaks at U+2028, U+0085, ...
    assert text == f"WARNING lsafe.fmt: dead letter key={shown}\n"


def test_the_template_itself_and_non_string_messages_are_escaped() -> None:
    logger, out = _capture(EscapingFormatter())
    logger.warning(f"f-string with a peer's text: {'x' + chr(10) + 'y'}")
    logger.warning(ValueError("bad\nvalue"))
    assert out.getvalue().splitlines() == ["f-string with a peer's text: x\\ny", "bad\\nvalue"]


def test_tracebacks_still_print_and_the_record_is_restored() -> None:
    logger, out = _capture(EscapingFormatter("%(levelname)s %(message)s"))
    records: list[logging.LogRecord] = []
    logger.addFilter(lambda r: records.append(r) or True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed on key=%s", "k\nFORGED")
    lines = out.getvalue().splitlines()
    assert lines[0] == "ERROR failed on key=k\\nFORGED"
    assert lines[1] == "Traceback (most recent call last):" and lines[-1] == "RuntimeError: boom"
    assert (records[0].msg, records[0].args) == ("failed on key=%s", ("k\nFORGED",))  # other handlers see it as is


def test_wraps_another_formatter_and_escaping_is_idempotent() -> None:
    inner = logging.Formatter("[%(levelname)s] <%(message)s>")
    logger, out = _capture(EscapingFormatter(inner=inner))
    logger.error("%d%% of %s", 50, "a\nb")
    assert out.getvalue() == "[ERROR] <50% of a\\nb>\n"
    assert escape_controls(escape_controls("a\n\x1b")) == escape_controls("a\n\x1b") == "a\\n\\x1b"
    assert escape_controls("C:\\path ünïcode ✓") == "C:\\path ünïcode ✓"


# --- rate limiting ----------------------------------------------------------------------------------------------


PREFIXES = ("lsafe.kafka",)  # loggers of these tests' own: a library's logger keeps propagating to the session


def test_the_default_prefixes_are_the_kafka_clients() -> None:
    limiter = RateLimitFilter()
    for name in ("aiokafka", "aiokafka.consumer.group_coordinator", "kafka.conn", "faust.transport.drivers.aiokafka"):
        assert limiter.limits(name), name
    for name in ("aiokafkax", "faust.agents", "streams.agents.ingest", "lettingo.registry", "asyncio"):
        assert not limiter.limits(name), name


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limited(limiter: RateLimitFilter, name: str = "lsafe.kafka") -> tuple[logging.Logger, io.StringIO]:
    logger, out = _capture(EscapingFormatter("%(name)s %(message)s"), name)
    logger.handlers[0].addFilter(limiter)
    return logger, out


def test_a_burst_becomes_one_line_then_a_count() -> None:
    clock = Clock()
    logger, out = _limited(RateLimitFilter(PREFIXES, clock=clock))
    for _ in range(1000):
        logger.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed")
    assert len(out.getvalue().splitlines()) == 1
    clock.now += 9.9
    logger.error("Unable connect to node with id %s: %s", 1, "refused")
    assert len(out.getvalue().splitlines()) == 1
    clock.now += 0.2
    logger.error("Unable connect to node with id %s: %s", 1, "refused")
    lines = out.getvalue().splitlines()
    assert lines[1] == (
        "lsafe.kafka Unable connect to node with id 1: refused (suppressed 1000 similar messages in the last 10 s)"
    )
    clock.now += 10
    logger.error("Unable connect to node with id %s: %s", 1, "refused")
    assert (
        out.getvalue().splitlines()[2] == "lsafe.kafka Unable connect to node with id 1: refused"
    )  # nothing held back


def test_distinct_messages_loggers_and_levels_are_not_merged() -> None:
    clock = Clock()
    limiter = RateLimitFilter(PREFIXES, clock=clock)
    logger, out = _limited(limiter, "lsafe.kafka.consumer.fetcher")
    other, other_out = _limited(limiter, "lsafe.kafka.producer.sender")
    ours, ours_out = _limited(limiter, "lsafe.ours")
    lookalike, lookalike_out = _limited(limiter, "lsafe.kafkax")
    for _ in range(100):
        logger.error("Failed fetch messages from %s: %s", 1, "x")
        logger.error("Unable to update metadata from %s", [1])
        logger.info("Updating subscribed topics to: %s", "t")  # below WARNING: never limited
        other.error("Unable to update metadata from %s", [1])
        ours.error("not a Kafka client's logger")
        lookalike.error("not under the prefix")
    assert len(out.getvalue().splitlines()) == 2 + 100
    assert len(other_out.getvalue().splitlines()) == 1
    assert len(ours_out.getvalue().splitlines()) == 100
    assert len(lookalike_out.getvalue().splitlines()) == 100


def test_memory_is_bounded() -> None:
    limiter = RateLimitFilter(PREFIXES, max_keys=50, clock=Clock())
    logger, out = _limited(limiter)
    for i in range(5000):
        logger.error(f"unique template {i}")  # an f-string: each message is its own key
    assert len(limiter._seen) == 50
    assert len(out.getvalue().splitlines()) == 5000


def test_thread_safe_and_one_decision_per_record_for_every_handler() -> None:
    limiter = RateLimitFilter(PREFIXES, clock=Clock())
    outs = [io.StringIO(), io.StringIO()]
    logger = logging.getLogger("lsafe.kafka.conn")
    logger.handlers[:] = [logging.StreamHandler(o) for o in outs]
    logger.propagate = False
    for handler in logger.handlers:
        handler.addFilter(limiter)

    def burst() -> None:
        for _ in range(500):
            logger.warning("Connection refused: %s", "x")

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [o.getvalue() for o in outs] == ["Connection refused: x\n"] * 2
    assert limiter._seen[("lsafe.kafka.conn", "Connection refused: %s")][1] == 8 * 500 - 1


def test_configure_safe_logging_is_idempotent() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.handlers[:] = [handler]
        first = configure_safe_logging()
        assert configure_safe_logging(interval_s=1) is first
        assert isinstance(handler.formatter, EscapingFormatter)
        assert not isinstance(handler.formatter.inner, EscapingFormatter)
        assert handler.filters == [first]
        logging.getLogger("lsafe_root").warning("key=%s", "a\nFORGED")
        for _ in range(10):
            logging.getLogger("aiokafka").error("Unable to update metadata from %s", [1])
        assert out.getvalue().splitlines() == [
            "WARNING lsafe_root: key=a\\nFORGED",
            "ERROR aiokafka: Unable to update metadata from [1]",
        ]
        root.handlers[:] = []  # nothing set up yet: it adds a stderr handler first
        configure_safe_logging(level=logging.INFO)
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, EscapingFormatter)
        assert root.level == logging.INFO
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


# --- the flood: a broker outage under the long-running processes ------------------------------------------------

OUTAGE_S = 15.0
MAX_LINES = 50  # warning/error lines a process may write in the outage; before the limiter: 590 to 1,200
LEVEL_LINE = re.compile(r"\b(ERROR|WARNING|WARN|CRITICAL)\b")


def _health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())
    except Exception:
        return {}


@pytest.mark.kafka
def test_a_broker_outage_does_not_flood_the_logs(tmp_path: Path) -> None:
    """Before the limiter, 15 s of outage wrote 590 (replay), 790 (worker) and 1,181 (trainer) lines."""
    from streams.kafka import broker

    with private_broker(tmp_path / "broker") as settings:
        web_port = free_port()
        env = {
            **os.environ,
            "LETTINGO_KAFKA_BOOTSTRAP": settings.bootstrap,
            "LETTINGO_HOME": str(tmp_path / "home"),
            "LETTINGO_WEB_PORT": str(web_port),
            "LETTINGO_DATASET": str(DATASET),
            "LETTINGO_CACHE_DIR": str(REPO / ".lettingo" / "cache"),
            "OMP_NUM_THREADS": "1",
        }
        cli = [sys.executable, "-m", "lettingo.cli.main"]
        commands = {
            "worker": [sys.executable, "-m", "streams.cli.worker", "-l", "warning"],
            "replay": [*cli, "replay", str(DATASET), "--no-items", "--rate", "5"],
            "trainer": [
                *cli,
                "train",
                "--watch",
                "--wait",
                "60",
                "--registry",
                str(tmp_path / "registry"),
                "--base-model",
                str(build_tiny_policy(tmp_path / "base")),
            ],
        }
        logs = {name: tmp_path / f"{name}.log" for name in commands}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, cmd in commands.items():
                with logs[name].open("wb") as out:
                    procs[name] = subprocess.Popen(
                        cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
            deadline = time.monotonic() + 90
            while not (
                _health(web_port).get("assigned_partitions")
                and "assigned partitions" in logs["trainer"].read_text(errors="replace")
            ):
                dead = [n for n, p in procs.items() if p.poll() is not None]
                assert not dead and time.monotonic() < deadline, {n: logs[n].read_text()[-3000:] for n in logs}
                time.sleep(0.5)
            before = {name: log.stat().st_size for name, log in logs.items()}
            os.kill(broker.running_pid(broker.BrokerPaths.of(settings)), signal.SIGKILL)  # the outage
            time.sleep(OUTAGE_S)
            alive = {name: proc.poll() is None for name, proc in procs.items()}
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    during = {
        name: log.read_bytes()[before[name] :].decode(errors="replace").splitlines() for name, log in logs.items()
    }
    counts = {name: sum(bool(LEVEL_LINE.search(line)) for line in lines) for name, lines in during.items()}
    print(f"warning/error lines in a {OUTAGE_S:.0f} s outage: {counts}")
    # each one kept retrying through the outage, so the count measures its flood, not an early exit
    assert all(alive.values()), {n: "\n".join(during[n][-20:]) for n in during if not alive[n]}
    assert max(counts.values()) <= MAX_LINES, (counts, {n: "\n".join(during[n][:30]) for n in during})


def test_json_lines_carry_the_structured_fields_and_escape_a_forged_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(inner=json_formatter()))
    logger = logging.getLogger("test.json_lines")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("profile user_id=%s", "u1\nFORGED", extra={"user_id": "u1", "profile_id": "p1"})
    finally:
        logger.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["user_id"] == "u1" and record["profile_id"] == "p1"
    assert "FORGED" in record["message"] and "\n" not in record["message"]
