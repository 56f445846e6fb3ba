"""A worker killed with SIGKILL mid-stream and restarted ends with the same tables and profiles as a run without
the kill: no event lost, none applied twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from lettingo import records
from lettingo.settings import Settings
from streams.kafka.topics import create_topics
from tests.streams_harness import WorkerProcess, produce, table_contents, wait_for
from tests.test_streams_flow import ITEMS, WORKER_SETTINGS

pytestmark = pytest.mark.kafka
USERS, EVENTS_PER_USER = 8, 40


def stream() -> list[tuple[str, str, bytes]]:
    """Each user's taste moves from one genre to another and back, so drift fires a few times."""
    out = []
    for n in range(EVENTS_PER_USER):
        for u in range(USERS):
            genre = "hcd"[(n // 12 + u) % 3]
            rating = 5.0 if (n + u) % 4 else 2.0
            event = records.Interaction(event_id=f"r-u{u}-{n}", user_id=f"r-u{u}", item_id=f"{genre}{(n + u) % 10}",
                                        kind="rating", rating=rating, ts=1e9 + n * 60)  # fmt: skip
            out.append(("interactions", f"r-u{u}", event.to_bytes()))
    return out


def new_settings(bootstrap: str, home: Path) -> Settings:
    s = Settings(home=home, kafka_bootstrap=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}-",
                 app_id=f"test-{uuid.uuid4().hex[:10]}")  # fmt: skip
    asyncio.run(create_topics(s))
    asyncio.run(produce(s, [("items", i.item_id, i.to_bytes()) for i in ITEMS]))
    return s


def settled(settings: Settings) -> tuple[dict, dict] | None:
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


def run(settings: Settings, log: Path, kill_midway: bool, reader: Path) -> tuple[dict, dict]:
    events = stream()
    half = len(events) // 2
    # Fewer explored rounds than the flow test: the point here is state, and every round is scored on each event.
    worker = WorkerProcess(settings, log, reader_path=reader, **{**WORKER_SETTINGS, "explore_rate": 0.25}).start()
    try:
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


@pytest.fixture(scope="module")
def clean_and_killed(kafka_bootstrap, tmp_path_factory, frozen_reader):
    """The same stream through a worker left alone and through one killed with SIGKILL halfway and restarted."""
    tmp = tmp_path_factory.mktemp("recovery")
    clean = run(new_settings(kafka_bootstrap, tmp / "a"), tmp / "a.log", False, frozen_reader)
    killed = run(new_settings(kafka_bootstrap, tmp / "b"), tmp / "b.log", True, frozen_reader)
    return clean, killed


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
