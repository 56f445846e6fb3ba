"""A worker killed with SIGKILL mid-stream and restarted, or whose agents raise and are restarted by Faust inside
the running worker, ends with the same tables and profiles as a run without the kill or the crash: no event lost,
none applied twice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lettingo import records
from streams.settings import StreamSettings
from tests.conftest import delete_test_topics
from tests.streams_harness import WorkerProcess, produce, table_contents, wait_for
from tests.test_streams_flow import WORKER_SETTINGS, stream_settings

pytestmark = pytest.mark.kafka
USERS, EVENTS_PER_USER = 8, 40


def stream() -> list[tuple[str, str, bytes]]:
    """Each user's taste moves from one genre to another and back, so drift fires a few times."""
    out = []
    for n in range(EVENTS_PER_USER):
        for u in range(USERS):
            genre = "hcd"[(n // 12 + u) % 3]
            rating = 5.0 if (n + u) % 4 else 2.0
            event = records.Interaction(
                event_id=f"r-u{u}-{n}",
                user_id=f"r-u{u}",
                item_id=f"{genre}{(n + u) % 10}",
                kind="rating",
                rating=rating,
                ts=1e9 + n * 60,
            )
            out.append(("interactions", f"r-u{u}", event.to_bytes()))
    return out


def settled(settings: StreamSettings) -> tuple[dict, dict] | None:
    """(user_state, profiles) once every event is applied and every requested profile written."""
    states = {k: json.loads(v) for k, v in table_contents(settings, "user_state").items()}
    if len(states) < USERS or any(s["count"] != EVENTS_PER_USER for s in states.values()):
        return None
    profiles = {k: json.loads(v) for k, v in table_contents(settings, "profiles").items()}
    for user, state in states.items():
        wanted = json.loads(state["last_request"])["history_ref"]
        if user not in profiles or profiles[user]["history_ref"] != wanted:
            return None
    return states, profiles


def run(
    settings: StreamSettings, log: Path, reader: Path, kill_midway: bool = False, crash: str = ""
) -> tuple[dict, dict]:
    """The stream through one worker: left alone, killed with SIGKILL halfway and restarted (``kill_midway``), or
    with agents that raise inside the running worker while the stream is produced (``crash``, as
    ``STREAMS_TEST_CRASH_AT``: see streams.faults), so that Faust's supervisor restarts them in-process."""
    events = stream()
    half = len(events) // 2
    # Fewer explored rounds than the flow test: the point here is state, and every round is scored on each event.
    worker = WorkerProcess(settings, log, reader_path=reader, **{**WORKER_SETTINGS, "explore_rate": 0.25})
    if crash:
        worker.env["STREAMS_TEST_CRASH_AT"] = crash
    worker.start()
    try:
        if crash:
            # One message at a time: the worker fetches, hands out and applies events while its agents crash and
            # are restarted, as in a live stream.
            asyncio.run(produce(settings, events))
            return wait_for("the stream to settle", lambda: settled(settings), 180)
        asyncio.run(produce(settings, events[:half]))
        if kill_midway:
            wait_for("some progress", lambda: table_contents(settings, "user_state"), 30, 0.1)
            worker.kill()
            asyncio.run(produce(settings, events[half:]))
            worker.start()
        else:
            asyncio.run(produce(settings, events[half:]))
        return wait_for("the stream to settle", lambda: settled(settings), 180)
    finally:
        worker.stop()
        delete_test_topics(settings)


@pytest.fixture(scope="module")
def clean(kafka_bootstrap, tmp_path_factory, frozen_reader):
    """The stream through a worker left alone: what every recovery must end with."""
    tmp = tmp_path_factory.mktemp("recovery")
    return run(stream_settings(kafka_bootstrap, tmp / "a"), tmp / "a.log", frozen_reader)


@pytest.fixture(scope="module")
def clean_and_killed(clean, kafka_bootstrap, tmp_path_factory, frozen_reader):
    """The same stream through a worker left alone and through one killed with SIGKILL halfway and restarted."""
    tmp = tmp_path_factory.mktemp("killed")
    return clean, run(stream_settings(kafka_bootstrap, tmp / "b"), tmp / "b.log", frozen_reader, kill_midway=True)


@pytest.fixture(scope="module")
def clean_and_crashed(clean, kafka_bootstrap, tmp_path_factory, frozen_reader):
    """The same stream through a worker left alone and through one whose ingest and regenerate agents each raise
    several times while it comes, after a batch's effects and before its offsets are recorded as applied."""
    tmp = tmp_path_factory.mktemp("crashed")
    settings, log = stream_settings(kafka_bootstrap, tmp / "c"), tmp / "c.log"
    # Early batches, from the first (the stream may come as one batch), while it is still coming: a restarted
    # agent's seek back then races with the events Faust fetched before it and still hands out (streams.applied),
    # more often than not. Several crashes of each agent make it (and the stall it caused) all but sure.
    crashed = run(settings, log, frozen_reader, crash="ingest:1+2+3+4,regenerate:1+2+3")
    text = log.read_text(errors="replace")
    assert all(f"injected crash in {agent} at batch" in text for agent in ("ingest", "regenerate"))
    return clean, crashed


def test_sigkill_mid_stream_then_restart_ends_with_the_same_user_state(clean_and_killed):
    (clean_states, clean_profiles), (killed_states, _) = clean_and_killed
    assert all(s["count"] == EVENTS_PER_USER for s in killed_states.values())  # no event lost or applied twice
    assert killed_states == clean_states
    assert any(p["current"]["version"] >= 2 for p in clean_profiles.values())  # drift did fire


def test_sigkill_mid_stream_then_restart_ends_with_the_same_profiles(clean_and_killed):
    (_, clean_profiles), (_, killed_profiles) = clean_and_killed
    assert {u: p["current"]["text"] for u, p in killed_profiles.items()} == {
        u: p["current"]["text"] for u, p in clean_profiles.items()
    }
    assert killed_profiles == clean_profiles


def test_agents_restarted_in_process_after_a_crash_end_with_the_same_state_and_profiles(clean_and_crashed):
    """An agent that raises is restarted by Faust's supervisor inside the running worker (the stream, consumer
    and tables stay): the stream goes on, and ends as without the crash."""
    (clean_states, clean_profiles), (crashed_states, crashed_profiles) = clean_and_crashed
    assert all(s["count"] == EVENTS_PER_USER for s in crashed_states.values())  # no event lost or applied twice
    assert crashed_states == clean_states
    assert crashed_profiles == clean_profiles
