"""The gate's task measure on the real frozen f_Rec: per-user scores, so candidate and champion are compared
paired on the same validation users, targets and negative draws (no generator needed here)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lettingo.settings import Settings
from trainer.gate import run_gate
from trainer.task_eval import validation_task

REPO = Path(__file__).resolve().parents[1]
TOLERANCES = {"task_accuracy": 0.01}


@pytest.fixture(scope="module")
def task(dataset_path: Path, frozen_reader: Path, tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(
        home=tmp_path_factory.mktemp("home"),
        cache_dir=REPO / ".lettingo" / "cache",
        dataset=dataset_path,
        reader_path=frozen_reader,
        trainer={"gate_users": 10},
    )
    return validation_task(settings)


def test_validation_task_scores_each_user_and_averages_them(task) -> None:
    assert len(task.users) == 10
    profiles = {u: ["Likes Comedy and Drama from the 1990s.", "Mostly Sci-Fi and Action."] for u in task.users}
    assert task.user_scorer is not None
    per_user = task.user_scorer(profiles)
    assert set(per_user) == set(task.users)
    assert all(0.0 <= v <= 1.0 for v in per_user.values())
    assert task.task_scorer(profiles) == pytest.approx(sum(per_user.values()) / len(per_user))


def test_the_gate_compares_validation_task_scores_paired_with_a_ci(task) -> None:
    written = {
        "cand": {u: ["Likes Comedy and Drama from the 1990s.", "Mostly Sci-Fi and Action."] for u in task.users},
        "champ": {u: ["Mostly Sci-Fi and Action.", "Likes Comedy and Drama from the 1990s."] for u in task.users},
    }
    gated = replace(task, profile_writer=lambda path, users: {u: written[path][u] for u in users})
    result = run_gate("cand", "champ", TOLERANCES, task=gated)
    # The same profiles in another order: the same per-user scores, a zero paired difference and a zero-width CI.
    assert result.candidate["task_accuracy"] == pytest.approx(result.champion["task_accuracy"])
    assert result.candidate["task_accuracy_paired_users"] == 10
    assert result.candidate["task_accuracy_delta"] == pytest.approx(0.0)
    assert result.candidate["task_accuracy_ci_half_width"] == pytest.approx(0.0)
    assert result.passed
    assert any("paired over 10 users" in note for note in result.notes)
