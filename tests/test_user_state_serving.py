"""The serving policy holder (registry verification, hf load, smoke, switch, rollback), the feedback join and
the scoreboard, no Kafka."""

from __future__ import annotations

import json

import pytest

from lettingo.feedback_join import PendingJoin, add_feedback, add_impression, close_expired
from lettingo.records import Feedback, Impression, ModelStatus, ModelVersion, ProfileCandidate, Reward
from lettingo.registry import ManifestDraft, ModelRegistry
from lettingo.scoreboard import Scoreboard, task_key
from lettingo.serving import ModelRefusedError, PolicyHolder
from lettingo.stream_eval import EvalTrigger, cases_for
from tests.task_eval_helpers import board_with, state_with_ratings


def publish(registry: ModelRegistry, folder, promote: bool = True) -> ModelVersion:
    manifest = registry.publish(folder, ManifestDraft(kind="full", base_model="nano"))
    if promote:
        registry.promote(manifest.version)
    return registry.model_version_record(manifest.version).model_copy(update={"status": ModelStatus.CHAMPION})


def test_switch_verifies_through_the_registry_smoke_tests_and_rolls_back(tmp_path, nano_model):
    registry = ModelRegistry(tmp_path / "registry")
    holder = PolicyHolder.from_spec("writer:combined")
    v1 = publish(registry, nano_model)
    loaded = holder.switch_to(v1)
    assert (loaded.version, loaded.generator.name) == ("profile-generator:1", "hf")
    assert holder.previous.version == "default"

    v2 = publish(registry, nano_model, promote=False)
    weights = next(p for p in registry.local_path(2, verify=False).iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ModelRefusedError) as refused:
        holder.switch_to(v2)
    assert refused.value.reason == "checksum" and holder.current.version == "profile-generator:1"
    assert holder.refused == {"profile-generator:2": "checksum"}

    v3 = publish(registry, nano_model)
    with pytest.raises(ModelRefusedError) as mismatch:
        holder.switch_to(v3.model_copy(update={"sha256": {**v3.sha256, "config.json": "0" * 64}}))
    assert mismatch.value.reason == "record_mismatch"

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": "x"}))
    with pytest.raises(ModelRefusedError) as unloadable:
        holder.switch_to(publish(registry, broken))
    assert unloadable.value.reason in {"load_failed", "smoke_failed"}

    # The registry rolls v1 back: the worker serves the configured policy again; v1 as champion switches back.
    assert holder.roll_back_from(v1.model_copy(update={"status": ModelStatus.ROLLED_BACK})).version == "default"
    assert holder.switch_to(v1).version == "profile-generator:1" and holder.previous.version == "default"


def test_feedback_join_rewards_a_click_once_and_an_unclicked_impression_negatively():
    join = PendingJoin()
    imp = lambda rid: Impression(request_id=rid, user_id="u", profile_id="p", item_ids=["i"], ts=0)  # noqa: E731
    click = Feedback(request_id="r1", user_id="u", item_id="i", kind="click", ts=0)
    assert add_impression(join, imp("r1"), 10, now=0) == []
    assert add_impression(join, imp("r2"), 10, now=0) == []
    [positive] = add_feedback(join, click, 10, now=1)
    assert positive.correct and add_feedback(join, click, 10, now=2) == []
    [negative] = close_expired("u", join, now=11)
    assert negative.target == "r2" and not negative.correct and join.empty


def test_scoreboard_counts_each_reward_once_and_pairs_better_with_worse():
    board = Scoreboard()
    for pid in ("good", "bad"):
        board.add_candidate(
            ProfileCandidate(
                profile_id=pid, user_id="u", text=pid, generator="g", model_version="v", history_ref="3@e3"
            ),
            prompt="P",
        )
    for target in ("a", "b"):
        for pid, ok in (("good", True), ("bad", False)):
            r = Reward(user_id="u", profile_id=pid, source="task_eval", target=target, correct=ok, value=float(ok))
            assert board.record(r) and not board.record(r)
    [pair] = board.new_pairs("u", min_rewards=2)
    assert (pair.chosen, pair.rejected, pair.prompt) == ("good", "bad", "P")
    assert (pair.chosen_reward, pair.rejected_reward) == (1.0, 0.0)
    assert board.new_pairs("u", min_rewards=2) == [] and board.open_candidates() == []  # the round closed


def test_a_candidate_is_only_tested_on_rated_events_after_its_history():
    state, board = state_with_ratings(6), board_with("3@e3", "p", "q")
    for e in state.events:
        trigger = EvalTrigger(user_id="u", event_id=e.event_id, seq=e.seq, item_id=e.item_id, rating=e.rating, ts=e.ts)
        cases = cases_for(trigger, lambda: state, board)
        if e.seq <= 3:  # in the prompt's history: testing on it would leak the answer
            assert cases == []
        else:
            [case] = cases
            assert [c.profile_id for c in case.candidates] == ["p", "q"] and case.event_id == e.event_id
            assert [r.item_id for r in case.history] == [f"i{k}" for k in range(1, e.seq)]


def test_a_late_candidate_is_tested_at_once_on_the_kept_later_events_and_each_pair_rewarded_once():
    state, board = state_with_ratings(6), board_with("3@e3", "p")
    cases = cases_for(EvalTrigger(user_id="u", profile_id="p"), lambda: state, board)
    assert [(c.event_id, c.target.item_id) for c in cases] == [("e4", "i4"), ("e5", "i5"), ("e6", "i6")]
    reward = Reward(user_id="u", profile_id="p", source="task_eval", target="i4", correct=True, value=1.0)
    assert board.record(reward, task_key("e4")) and not board.record(reward, task_key("e4"))
    assert [c.event_id for c in cases_for(EvalTrigger(user_id="u", profile_id="p"), lambda: state, board)] == [
        "e5",
        "e6",
    ]
    live = EvalTrigger(user_id="u", event_id="e4", seq=4, item_id="i4", rating=4.0, ts=4)
    assert cases_for(live, lambda: state, board) == []  # already rewarded on e4
    assert cases_for(live, lambda: state, board, skip=lambda pid, eid: True) == []


def test_a_late_candidate_catches_up_only_on_the_earliest_events_it_still_needs():
    state, board = state_with_ratings(8), board_with("3@e3", "p")
    late = EvalTrigger(user_id="u", profile_id="p")
    assert [c.event_id for c in cases_for(late, lambda: state, board, catch_up=2)] == ["e4", "e5"]
    reward = Reward(user_id="u", profile_id="p", source="task_eval", target="i4", correct=True, value=1.0)
    board.record(reward, task_key("e4"))
    assert [c.event_id for c in cases_for(late, lambda: state, board, catch_up=2)] == ["e5"]
    board.record(reward.model_copy(update={"target": "i5"}), task_key("e5"))
    assert cases_for(late, lambda: state, board, catch_up=2) == []
    assert [c.event_id for c in cases_for(late, lambda: state, board)] == ["e6", "e7", "e8"]  # no limit: every one
