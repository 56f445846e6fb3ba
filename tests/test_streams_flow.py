"""One worker on the real broker, driven through every agent: dead letters, ingest, drift, regenerate,
task evaluation, feedback join, preference pairs and model hot-swap."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lettingo import records
from lettingo.prompts.profile import PROFILE_CUE, SYSTEM_PROMPT
from lettingo.registry import ManifestDraft, ModelRegistry
from lettingo.user_state import UserState
from streams.settings import StreamSettings
from tests.conftest import delete_test_topics
from tests.streams_harness import WorkerProcess, catalogue_settings, produce, table_contents, topic_records, wait_for

pytestmark = pytest.mark.kafka

GENRES = {"h": ["Horror", "Thriller"], "c": ["Comedy"], "d": ["Drama", "Romance"]}
ITEMS = [
    records.Item(item_id=f"{g}{n}", title=f"{GENRES[g][0]} Film {n} (199{n})", attributes=GENRES[g], year=1990 + n)
    for g in GENRES
    for n in range(10)
]
WORKER_SETTINGS = dict(
    worker_cold_start_after=3,
    drift_min_new_events=3,
    drift_cooldown_seconds=0,
    drift_threshold=0.2,
    explore_rate=1.0,
    explore_k=5,
    feedback_window_seconds=3,
    pairs_min_rewards=2,
    regen_batch_seconds=0.2,
    eval_negatives=29,  # a harder ranking than 1 in 10, so that candidates' rewards differ and pairs form
)


def interaction(user: str, item: str, rating: float, n: int) -> tuple[str, str, bytes]:
    event = records.Interaction(
        event_id=f"{user}-{n}", user_id=user, item_id=item, kind="rating", rating=rating, ts=1e9 + n
    )
    return ("interactions", user, event.to_bytes())


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamSettings]:
    s = stream_settings(kafka_bootstrap, tmp_path_factory.mktemp("flow"))
    yield s
    delete_test_topics(s)


def stream_settings(bootstrap: str, home: Path) -> StreamSettings:
    """Unique settings whose topics exist and whose items topic holds the test catalogue."""
    return catalogue_settings(bootstrap, home, ITEMS)


@pytest.fixture(scope="module")
def worker(settings: StreamSettings, frozen_reader: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(settings, settings.home / "worker.log", reader_path=frozen_reader, **WORKER_SETTINGS)
    w.start()
    yield w
    w.stop()


def profiles_of(settings: StreamSettings, user: str) -> list[records.Profile]:
    return [records.Profile.from_bytes(r.value) for r in topic_records(settings, "profiles") if r.key == user.encode()]


def values_of(settings: StreamSettings, topic: str, record_type, user: str | None = None) -> list:
    return [
        record_type.from_bytes(r.value)
        for r in topic_records(settings, topic)
        if r.value is not None and (user is None or r.key == user.encode())
    ]


def test_malformed_inputs_go_to_dead_letters_and_valid_ones_around_them_are_processed(settings, worker):
    big = json.dumps(
        {"event_id": "x", "user_id": "u-dl", "item_id": "h1", "kind": "view", "ts": 1, "text": "a" * 70_000}
    )
    bad = {
        "bad_json": b"{not json",
        "missing": b'{"user_id": "u-dl"}',
        "wrong_type": b'{"event_id": 1, "user_id": ["u"], "item_id": 3, "kind": "x", "ts": "no"}',
        "oversized": big.encode(),
        "empty": None,
        "blank": b"",
    }
    expected_reason = {
        "bad_json": "invalid_json",
        "missing": "invalid_record",
        "wrong_type": "invalid_record",
        "oversized": "oversized",
        "empty": "empty",
        "blank": "invalid_json",
    }
    messages = [interaction("u-dl", "h1", 5, 1)]
    for topic in ("interactions", "items", "impressions", "feedback"):
        messages += [(topic, f"{topic}-{name}", payload) for name, payload in bad.items()]
    messages.append(interaction("u-dl", "h2", 4, 2))
    asyncio.run(produce(settings, messages))

    def letters():
        found = {(r.key, r.reason) for r in values_of(settings, "dead-letters", records.DeadLetter, None)}
        return found if len(found) >= 24 else None

    found = wait_for("24 dead letters", letters, 60)
    for topic in ("interactions", "items", "impressions", "feedback"):
        for name in bad:
            assert (f"{topic}-{name}", expected_reason[name]) in found, (topic, name)
    state = wait_for("u-dl state", lambda: table_contents(settings, "user_state").get("u-dl"))
    assert wait_for(
        "both valid events", lambda: json.loads(table_contents(settings, "user_state")["u-dl"])["count"] == 2
    )
    assert (
        'lettingo_dead_letters_total{reason="oversized"' in worker.metrics()
        or "lettingo_dead_letters_total" in worker.metrics()
    )
    assert state


def test_profiles_regenerate_on_drift_and_not_without_it(settings, worker):
    stable = [interaction("u-stable", f"h{n}", 5, n) for n in range(8)]
    drifting = [interaction("u-drift", f"h{n}", 5, n) for n in range(3)]
    drifting += [interaction("u-drift", f"c{n}", 1, 10 + n) for n in range(4)]
    asyncio.run(produce(settings, stable + drifting))
    wait_for("u-drift's drift profile", lambda: len(profiles_of(settings, "u-drift")) >= 2)
    time.sleep(2)  # u-stable's events were sent first: by now they are all processed
    stable_profiles = profiles_of(settings, "u-stable")
    assert [(p.version, p.reason) for p in stable_profiles] == [(1, records.RequestReason.COLD_START)]
    drift_profiles = profiles_of(settings, "u-drift")
    assert [(p.version, p.reason) for p in drift_profiles] == [(1, "cold_start"), (2, "drift")]
    view = worker.get("/users/u-drift/profile")
    assert view["current"]["version"] == 2 and [v["version"] for v in view["versions"]] == [1, 2]
    requests = values_of(settings, "profile-requests", records.ProfileRequest, "u-drift")
    assert requests[-1].drift_score >= 0.2


def test_rated_events_reward_open_candidates_and_pairs_appear(settings, worker):
    users = [f"u-pairs{n}" for n in range(3)]
    first = [interaction(u, f"h{n}", 5, n) for u in users for n in range(3)]
    asyncio.run(produce(settings, first))

    def all_candidates():
        found = values_of(settings, "profile-candidates", records.ProfileCandidate)
        return found if {x.user_id for x in found} >= set(users) else None

    candidates = wait_for("candidates", all_candidates)
    later = [interaction(u, f"h{n}", 5, n) for u in users for n in range(5, 8)]  # same taste: no drift
    asyncio.run(produce(settings, later))
    open_ids = {c.profile_id for c in candidates if c.user_id == users[0]}

    def task_rewards():
        found = [x for x in values_of(settings, "rewards", records.Reward, users[0]) if x.source == "task_eval"]
        # every open candidate rewarded on the earliest later rated events, as many as its round needs (2 here)
        complete = {x.profile_id for x in found} >= open_ids and {x.target for x in found} >= {"h5", "h6"}
        return found if complete else None

    rewards = wait_for("task rewards", task_rewards)
    # The ranking task of the offline evaluator: the new item among popularity-matched unseen items, graded by
    # reciprocal rank (averaged over the negative draws) and judged by the frozen embedding reader.
    assert {r.target for r in rewards} >= {"h5", "h6"}
    assert all(r.actual == r.target and 0 < r.value <= 1 and r.model_version.startswith("embedding:") for r in rewards)
    pairs = wait_for("preference pairs", lambda: values_of(settings, "preference-pairs", records.PreferencePair))
    assert all(p.chosen_reward > p.rejected_reward and p.chosen != p.rejected for p in pairs)
    assert len({p.pair_id for p in pairs}) == len(pairs)
    # The pair's prompt is the generation prompt the candidates were sampled from: the profile prompt over H_u.
    by_id = {c.profile_id: c for c in values_of(settings, "profile-candidates", records.ProfileCandidate)}
    for pair in pairs:
        assert pair.prompt == by_id[pair.chosen_profile_id].prompt == by_id[pair.rejected_profile_id].prompt
        assert pair.prompt.startswith(SYSTEM_PROMPT) and pair.prompt.endswith(PROFILE_CUE)
        assert '"Horror Film 0 (1990)"' in pair.prompt


def test_impressions_with_and_without_clicks_yield_rewards(settings, worker):
    now = time.time()

    def impression(rid: str) -> records.Impression:
        return records.Impression(request_id=rid, user_id="u-click", profile_id="p1", item_ids=["h1", "c1"], ts=now)

    click = records.Feedback(request_id="r-clicked", user_id="u-click", item_id="h1", kind="click", ts=now)
    asyncio.run(
        produce(
            settings,
            [
                ("impressions", "u-click", impression("r-clicked").to_bytes()),
                ("impressions", "u-click", impression("r-ignored").to_bytes()),
                ("feedback", "u-click", click.to_bytes()),
            ],
        )
    )
    rewards = wait_for(
        "two click rewards",
        lambda: (r := values_of(settings, "rewards", records.Reward, "u-click")) and len(r) >= 2 and r,
        30,
    )
    by_request = {r.target: r for r in rewards}
    assert len(rewards) == 2
    assert by_request["r-clicked"].correct and by_request["r-clicked"].value == 1.0
    assert not by_request["r-ignored"].correct and by_request["r-ignored"].actual == "no_click"


def test_a_published_version_is_hot_swapped_a_corrupted_one_refused_and_a_rollback_switches_back(
    settings, worker, tmp_path, nano_model
):
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(nano_model, ManifestDraft(kind="full", base_model="nano"))
    registry.promote(1)
    asyncio.run(produce(settings, [("model-versions", registry.name, registry.model_version_record(1).to_bytes())]))
    wait_for("version 1 served", lambda: worker.health()["model_version"] == "profile-generator:1", 120)

    registry.publish(nano_model, ManifestDraft(kind="full", base_model="nano"))
    (registry.local_path(2, verify=False) / "config.json").write_text("{}")  # corrupted after publication
    claimed = registry.model_version_record(2).model_copy(update={"status": records.ModelStatus.CHAMPION})
    asyncio.run(produce(settings, [("model-versions", registry.name, claimed.to_bytes())]))
    health = wait_for(
        "version 2 refused",
        lambda: (h := worker.health()) and "profile-generator:2" in h["refused_model_versions"] and h,
    )
    assert health["model_version"] == "profile-generator:1"
    assert health["refused_model_versions"]["profile-generator:2"] == "checksum"
    assert health["previous_model_version"] == "default"
    letters = values_of(settings, "dead-letters", records.DeadLetter)
    assert any(d.reason == "model_refused" and "profile-generator:2" in d.error for d in letters)
    assert 'lettingo_models_refused_total{reason="checksum"} 1.0' in worker.metrics()

    # The hf backend on the nano model writes the next profile.
    asyncio.run(produce(settings, [interaction("u-after-swap", f"d{n}", 4, n) for n in range(3)]))
    [profile] = wait_for("a profile from the new version", lambda: profiles_of(settings, "u-after-swap"), 120)
    assert profile.model_version == "profile-generator:1" and profile.text.strip()
    assert 'lettingo_model_version_info{generator="hf",version="profile-generator:1"} 1.0' in worker.metrics()

    registry.rollback()
    rolled = registry.model_version_record(1)
    assert rolled.status is records.ModelStatus.ROLLED_BACK
    asyncio.run(produce(settings, [("model-versions", registry.name, rolled.to_bytes())]))
    health = wait_for("rolled back", lambda: (h := worker.health()) and h["model_version"] == "default" and h)
    assert health["previous_model_version"] == "profile-generator:1"


def test_a_user_forgotten_while_the_worker_runs_stays_forgotten_after_new_events_and_a_restart(settings, worker):
    """Erasure that holds: the running worker deletes the user from every table and the profiles topic at once, a
    new event starts a fresh state (not the old one plus one), an event that reached Kafka before the erasure is
    dropped, and a restarted worker restores none of it."""
    from streams.cli.users import forget_user

    wait_for("u-stable's profile", lambda: worker.get("/users/u-stable/profile"))
    erasure = asyncio.run(forget_user(settings, "u-stable"))

    def forgotten() -> bool:
        return all(
            "u-stable" not in table_contents(settings, t)
            for t in ("user_state", "profiles", "scoreboard", "pending_join")
        )

    wait_for("u-stable gone from every table", forgotten, 30)
    assert [r for r in topic_records(settings, "profiles") if r.key == b"u-stable"][-1].value is None
    assert worker.get("/users/u-stable/profile")["error"] == "no profile"
    # An old event that reached Kafka before the erasure (a late producer, a replay), then a new one.
    old = records.Interaction(
        event_id="u-stable-old", user_id="u-stable", item_id="h1", kind="rating", rating=5, ts=1e9 + 50
    )
    asyncio.run(produce_at(settings, "interactions", "u-stable", old.to_bytes(), erasure.ts - 60))
    asyncio.run(produce(settings, [interaction("u-stable", "c1", 2, 100)]))
    state = wait_for(
        "the new event applied",
        lambda: (v := table_contents(settings, "user_state").get("u-stable")) and UserState.from_bytes(v),
        30,
    )
    assert state.count == 1 and [e.event_id for e in state.events] == ["u-stable-100"]
    assert 'lettingo_forgotten_events_total{topic="interactions"} 1.0' in worker.metrics()

    worker.stop()
    worker.start()
    assert worker.get("/users/u-stable/profile")["error"] == "no profile"
    state = UserState.from_bytes(table_contents(settings, "user_state")["u-stable"])
    assert state.count == 1
    assert [r for r in topic_records(settings, "profiles") if r.key == b"u-stable"][-1].value is None


async def produce_at(settings: StreamSettings, topic: str, key: str, value: bytes, at: float) -> None:
    """One message whose Kafka timestamp is ``at`` (epoch s), as a producer that sent it then would have."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(topic), value=value, key=key.encode(), timestamp_ms=int(at * 1000))
    finally:
        await producer.stop()
