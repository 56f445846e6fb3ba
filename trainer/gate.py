"""The publication gate: a candidate is published only if it is not worse than the champion beyond a tolerance.

:func:`decide` is a pure function over metric dicts (every metric "higher is better"). :func:`measure` computes
those dicts for one model from callables, so the real f_Rec and profile writers plug in without this module
knowing them:

- ``profile_writer(model_path, users) -> profiles`` writes one profile per validation user with the policy;
- ``task_scorer(profiles) -> accuracy`` is the frozen recommender's task accuracy with those profiles;
- ``user_scorer(profiles) -> {user: accuracy}`` (optional, preferred) is the same accuracy per validation user.
  With it the task check is *paired*: both models are scored on the same users, targets and negatives, and the
  candidate is refused only when the 95 % CI of the per-user difference lies wholly below ``-tolerance``, i.e. the
  effective tolerance is the configured one plus the CI's half-width. At the quick demo's size (10 users) a
  neutral candidate's measured difference has a standard deviation of about 4 points, so a fixed 1-point
  tolerance refused a third of neutral candidates (see :func:`paired_task_comparison`);
- ``pair_logps(model_path, pairs) -> (logp_chosen, logp_rejected)`` scores held-out preference pairs.

On held-out pairs each model gets ``pair_accuracy`` (share of pairs where log p(chosen) > log p(rejected)) and
``pair_margin`` (mean of beta * (log p(chosen) - log p(rejected))). The candidate's margin minus the champion's is
exactly DPO's implicit reward margin of the candidate with the champion as reference, which is reported too
(``dpo_reward_accuracy``, ``dpo_reward_margin``).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy.stats import t as student_t

log = logging.getLogger(__name__)

ProfileWriter = Callable[[str, Sequence[Any]], Sequence[Any]]
TaskScorer = Callable[[Sequence[Any]], float]
UserScorer = Callable[[Any], Mapping[str, float]]
PairLogps = Callable[[str, Sequence[Any]], tuple[Sequence[float], Sequence[float]]]

_EPSILON = 1e-9
TASK_CONFIDENCE = 0.95


@dataclass(frozen=True)
class MetricComparison:
    name: str
    candidate: float
    champion: float
    tolerance: float

    @property
    def delta(self) -> float:
        return self.candidate - self.champion

    @property
    def passed(self) -> bool:
        return self.delta >= -self.tolerance - _EPSILON

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta, "passed": self.passed}


@dataclass(frozen=True)
class GateResult:
    passed: bool
    comparisons: list[MetricComparison]
    notes: list[str] = field(default_factory=list)
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [
            f"{c.name} {c.candidate:.4f} vs {c.champion:.4f} ({c.delta:+.4f}, tolerance {c.tolerance:.4g}"
            f"{'' if c.passed else ', WORSE'})"
            for c in self.comparisons
        ]
        verdict = "passed" if self.passed else "refused"
        return f"gate {verdict}: " + ("; ".join(parts + self.notes) or "nothing compared")

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "notes": list(self.notes),
            "candidate": dict(self.candidate),
            "champion": dict(self.champion),
        }


def decide(
    candidate: Mapping[str, float], champion: Mapping[str, float], tolerances: Mapping[str, float]
) -> GateResult:
    """Compare every metric that has a tolerance and was measured on both sides.

    Fails closed: when no metric could be compared, the candidate is refused.
    """
    comparisons: list[MetricComparison] = []
    notes: list[str] = []
    for name, tolerance in tolerances.items():
        if name in candidate and name in champion:
            comparisons.append(MetricComparison(name, float(candidate[name]), float(champion[name]), tolerance))
        else:
            notes.append(f"{name} not measured")
    if not comparisons:
        notes.append("no metric could be compared")
    passed = bool(comparisons) and all(c.passed for c in comparisons)
    return GateResult(passed, comparisons, notes, dict(candidate), dict(champion))


@dataclass(frozen=True)
class TaskEvaluation:
    """The validation users and the frozen task: how the gate measures f_Rec accuracy of a policy's profiles."""

    users: Sequence[Any]
    profile_writer: ProfileWriter
    task_scorer: TaskScorer
    user_scorer: UserScorer | None = None  # per-user accuracy: enables the paired comparison


def paired_task_comparison(
    candidate: Mapping[str, float], champion: Mapping[str, float], confidence: float = TASK_CONFIDENCE
) -> dict[str, float]:
    """Mean per-user difference candidate - champion over the users both were scored on, its standard error and
    the half-width of its two-sided ``confidence`` interval (Student's t over users; 0 with fewer than 2 users)."""
    users = sorted(set(candidate) & set(champion))
    differences = [float(candidate[u]) - float(champion[u]) for u in users]
    if not differences:
        return {}
    n = len(differences)
    mean = sum(differences) / n
    se = statistics.stdev(differences) / math.sqrt(n) if n > 1 else 0.0
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * se if n > 1 else 0.0
    return {
        "task_accuracy_delta": mean,
        "task_accuracy_delta_se": se,
        "task_accuracy_delta_ci_low": mean - half,
        "task_accuracy_delta_ci_high": mean + half,
        "task_accuracy_ci_half_width": half,
        "task_accuracy_paired_users": float(n),
    }


def held_out_pair_metrics(chosen: Sequence[float], rejected: Sequence[float], beta: float) -> dict[str, float]:
    if not chosen:
        return {}
    differences = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {
        "pair_accuracy": sum(d > 0 for d in differences) / len(differences),
        "pair_margin": beta * sum(differences) / len(differences),
    }


def dpo_reward_metrics(
    candidate: tuple[Sequence[float], Sequence[float]], champion: tuple[Sequence[float], Sequence[float]], beta: float
) -> dict[str, float]:
    """DPO's implicit reward of the candidate on held-out pairs, with the champion as the reference."""
    margins = [
        beta * ((cc - rc) - (cr - rr))
        for cc, cr, rc, rr in zip(candidate[0], candidate[1], champion[0], champion[1], strict=True)
    ]
    if not margins:
        return {}
    return {
        "dpo_reward_accuracy": sum(m > 0 for m in margins) / len(margins),
        "dpo_reward_margin": sum(margins) / len(margins),
    }


def _mean(values: Any) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else 0.0


def run_gate(
    candidate_path: str,
    champion_path: str,
    tolerances: Mapping[str, float],
    *,
    task: TaskEvaluation | None = None,
    held_out_pairs: Sequence[Any] = (),
    pair_logps: PairLogps | None = None,
    beta: float = 0.1,
) -> GateResult:
    """Measure the candidate and the champion the same way, then :func:`decide`."""
    candidate: dict[str, float] = {}
    champion: dict[str, float] = {}
    extra_notes: list[str] = []
    tolerances = dict(tolerances)
    if task is not None and task.users:
        if task.user_scorer is not None:
            per_user = {
                path: dict(task.user_scorer(task.profile_writer(path, task.users)))
                for path in dict.fromkeys((candidate_path, champion_path))
            }
            cand_users, champ_users = per_user[candidate_path], per_user[champion_path]
            candidate["task_accuracy"] = _mean(cand_users.values())
            champion["task_accuracy"] = _mean(champ_users.values())
            paired = paired_task_comparison(cand_users, champ_users)
            candidate.update(paired)
            if paired and "task_accuracy" in tolerances:
                configured = tolerances["task_accuracy"]
                tolerances["task_accuracy"] = configured + paired["task_accuracy_ci_half_width"]
                extra_notes.append(
                    f"task_accuracy paired over {paired['task_accuracy_paired_users']:.0f} users: difference "
                    f"{paired['task_accuracy_delta']:+.4f}, {TASK_CONFIDENCE:.0%} CI "
                    f"[{paired['task_accuracy_delta_ci_low']:+.4f}, {paired['task_accuracy_delta_ci_high']:+.4f}]; "
                    f"tolerance {configured} + CI half-width {paired['task_accuracy_ci_half_width']:.4f}"
                )
        else:
            for metrics, path in ((candidate, candidate_path), (champion, champion_path)):
                metrics["task_accuracy"] = float(task.task_scorer(task.profile_writer(path, task.users)))
        candidate["validation_users"] = champion["validation_users"] = float(len(task.users))
    if held_out_pairs and pair_logps is not None:
        candidate_logps = pair_logps(candidate_path, held_out_pairs)
        champion_logps = pair_logps(champion_path, held_out_pairs)
        candidate.update(held_out_pair_metrics(*candidate_logps, beta=beta))
        champion.update(held_out_pair_metrics(*champion_logps, beta=beta))
        candidate.update(dpo_reward_metrics(candidate_logps, champion_logps, beta))
        candidate["held_out_pairs"] = champion["held_out_pairs"] = float(len(held_out_pairs))
    elif not held_out_pairs:
        extra_notes.append("no held-out pairs")
    result = decide(candidate, champion, tolerances)
    result.notes.extend(extra_notes)
    log.info("%s", result.summary())
    return result
