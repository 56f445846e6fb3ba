"""The publication gate: a pure decision over metric dicts, and a runner over profile-writer / scorer callables."""

from __future__ import annotations

import pytest

from trainer.gate import TaskEvaluation, decide, dpo_reward_metrics, held_out_pair_metrics, run_gate

TOLERANCES = {"task_accuracy": 0.01, "pair_accuracy": 0.02, "pair_margin": 0.0}


def test_a_candidate_as_good_as_the_champion_within_tolerance_passes() -> None:
    result = decide(
        {"task_accuracy": 0.195, "pair_accuracy": 0.70, "pair_margin": 0.31},
        {"task_accuracy": 0.200, "pair_accuracy": 0.71, "pair_margin": 0.30},
        TOLERANCES,
    )
    assert result.passed
    assert [c.name for c in result.comparisons] == ["task_accuracy", "pair_accuracy", "pair_margin"]
    assert result.comparisons[0].delta == pytest.approx(-0.005)
    assert result.to_dict()["comparisons"][0]["passed"] is True


def test_a_candidate_worse_beyond_tolerance_on_any_metric_is_refused() -> None:
    result = decide(
        {"task_accuracy": 0.18, "pair_accuracy": 0.90, "pair_margin": 0.5},
        {"task_accuracy": 0.20, "pair_accuracy": 0.70, "pair_margin": 0.3},
        TOLERANCES,
    )
    assert not result.passed
    failed = [c.name for c in result.comparisons if not c.passed]
    assert failed == ["task_accuracy"]
    assert "gate refused" in result.summary() and "WORSE" in result.summary()


def test_a_metric_measured_on_one_side_only_is_noted_not_compared() -> None:
    result = decide({"task_accuracy": 0.3, "pair_accuracy": 0.8}, {"task_accuracy": 0.3}, TOLERANCES)
    assert result.passed
    assert "pair_accuracy not measured" in result.notes


def test_nothing_measured_fails_closed() -> None:
    result = decide({}, {}, TOLERANCES)
    assert not result.passed
    assert "no metric could be compared" in result.notes


def test_held_out_pair_metrics_and_the_dpo_reward_relative_to_the_champion() -> None:
    chosen, rejected = [-10.0, -12.0, -9.0, -11.0], [-11.0, -11.0, -10.0, -13.0]
    metrics = held_out_pair_metrics(chosen, rejected, beta=0.1)
    assert metrics == {"pair_accuracy": 0.75, "pair_margin": pytest.approx(0.1 * 3 / 4)}

    # The candidate raised chosen log-probs by 1 nat and left rejected alone: every implicit reward margin is +beta.
    candidate = ([c + 1 for c in chosen], rejected)
    rewards = dpo_reward_metrics(candidate, (chosen, rejected), beta=0.1)
    assert rewards == {"dpo_reward_accuracy": 1.0, "dpo_reward_margin": pytest.approx(0.1)}


def _task(accuracy_by_model: dict[str, float]) -> TaskEvaluation:
    users = ["u1", "u2", "u3"]

    def profile_writer(model_path: str, users: list[str]) -> list[str]:
        return [f"{model_path} profile of {user}" for user in users]

    def task_scorer(profiles: list[str]) -> float:
        assert len(profiles) == len(users)
        return accuracy_by_model[profiles[0].split(" ")[0]]

    return TaskEvaluation(users=users, profile_writer=profile_writer, task_scorer=task_scorer)


def _pair_logps(by_model: dict[str, tuple[list[float], list[float]]]):
    return lambda model_path, pairs: by_model[model_path]


@pytest.mark.parametrize(
    ("candidate_accuracy", "candidate_chosen", "passes"),
    [(0.40, [-1.0, -1.0], True), (0.30, [-1.0, -1.0], False), (0.40, [-3.0, -3.0], False)],
)
def test_the_runner_measures_both_models_the_same_way(
    candidate_accuracy: float, candidate_chosen: list[float], passes: bool
) -> None:
    logps = {"champ": ([-2.0, -2.0], [-2.5, -2.5]), "cand": (candidate_chosen, [-2.5, -2.5])}
    result = run_gate(
        "cand",
        "champ",
        TOLERANCES,
        task=_task({"cand": candidate_accuracy, "champ": 0.40}),
        held_out_pairs=["p1", "p2"],
        pair_logps=_pair_logps(logps),
        beta=0.1,
    )
    assert result.passed is passes
    assert result.candidate["task_accuracy"] == candidate_accuracy
    assert result.champion["task_accuracy"] == 0.40
    assert result.candidate["held_out_pairs"] == 2
    assert "dpo_reward_margin" in result.candidate


def test_the_runner_without_held_out_pairs_uses_the_task_alone() -> None:
    result = run_gate("cand", "champ", TOLERANCES, task=_task({"cand": 0.5, "champ": 0.4}))
    assert result.passed
    assert "no held-out pairs" in result.notes
