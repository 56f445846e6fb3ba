"""The serving policy holder (verify, smoke, switch, rollback), the feedback join and the scoreboard, no Kafka."""

from __future__ import annotations

import hashlib
import json

import pytest

from lettingo.feedback_join import PendingJoin, add_feedback, add_impression, close_expired
from lettingo.records import Feedback, Impression, ModelVersion, ProfileCandidate, Reward
from lettingo.scoreboard import Scoreboard
from lettingo.serving import ModelRefusedError, PolicyHolder


def version(tmp_path, n: int, generator: str, corrupt: bool = False) -> ModelVersion:
    folder = tmp_path / f"v{n}"
    folder.mkdir()
    (folder / "policy.json").write_text(json.dumps({"generator": generator}))
    digest = hashlib.sha256((folder / "policy.json").read_bytes()).hexdigest()
    return ModelVersion(name="m", version=n, kind="full", uri=str(folder), base_model="b",
                        sha256={"policy.json": "0" * 64 if corrupt else digest}, status="champion")  # fmt: skip


def test_switch_verifies_smoke_tests_and_rolls_back(tmp_path):
    holder = PolicyHolder.from_spec("writer:combined")
    holder.switch_to(version(tmp_path, 1, "writer:titles"))
    assert holder.current.version == "m:1" and holder.previous.version == "default"
    with pytest.raises(ModelRefusedError) as refused:
        holder.switch_to(version(tmp_path, 2, "writer:genres", corrupt=True))
    assert refused.value.reason == "checksum" and holder.current.version == "m:1"
    with pytest.raises(ModelRefusedError) as broken:
        holder.switch_to(version(tmp_path, 3, "writer:no_such_writer"))
    assert broken.value.reason in {"load_failed", "smoke_failed"}
    assert holder.rollback().version == "default"


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
        board.add_candidate(ProfileCandidate(profile_id=pid, user_id="u", text=pid, generator="g", model_version="v",
                                             history_ref="3@e3"), prompt="P")  # fmt: skip
    for target in ("a", "b"):
        for pid, ok in (("good", True), ("bad", False)):
            r = Reward(user_id="u", profile_id=pid, source="task_eval", target=target, correct=ok, value=float(ok))
            assert board.record(r) and not board.record(r)
    [pair] = board.new_pairs("u", min_rewards=2)
    assert (pair.chosen, pair.rejected, pair.prompt) == ("good", "bad", "P")
    assert board.new_pairs("u", min_rewards=2) == []
