"""The publication gate: a candidate is published unless it is shown to be worse than the champion.

Every check is a paired comparison with a confidence interval: both models are measured on the same units (a
validation user, or the held-out pairs of one user), and the candidate is refused on a metric only when the
95 % CI of the mean per-unit difference (candidate - champion, Student's t over units) lies wholly below
``-tolerance``. A handful of units gives a wide interval, so noise alone does not refuse a round; a single unit
has no interval at all (it cannot show the candidate worse), which the gate notes. When nothing could be
measured the candidate is refused (fail closed).

The checks, from callables so the real f_Rec and profile writers plug in without this module knowing them:

- ``task_accuracy``: ``profile_writer(model_path, users) -> profiles`` writes profiles for the validation users
  with each policy, ``user_scorer(profiles) -> {user: accuracy}`` scores them with the frozen recommender on the
  same targets and negatives. At the quick demo's size (10 users) a neutral candidate's difference has a
  standard deviation of about 4 points, so the old fixed 1-point tolerance refused a third of neutral rounds.
  (A ``task_scorer`` without ``user_scorer`` gives one number per model: that legacy check stays a point
  comparison, and says so.)
- ``pair_accuracy`` and ``pair_margin`` on held-out preference pairs, from ``pair_logps(model_path, pairs) ->
  (logp_chosen, logp_rejected)``: per pair, whether log p(chosen) > log p(rejected) and beta times that log-ratio.
  The per-pair difference of margins is exactly DPO's implicit reward margin of the candidate with the champion
  as reference (``dpo_reward_margin``). Pairs are grouped by user (a user's pairs share a prompt history), so the
  quick demo's 8 held-out pairs of 2 users are 2 units, not 8 (its old point comparison with tolerance 0
  refused every quick round).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy.stats import t as student_t

log = logging.getLogger(__name__)

# The profiles a writer returns are opaque to the gate: it hands them to the scorers as they are.
ProfileWriter = Callable[[str, Sequence[Any]], Any]
TaskScorer = Callable[[Any], float]
UserScorer = Callable[[Any], Mapping[str, float]]
PairLogps = Callable[[str, Sequence[Any]], tuple[Sequence[float], Sequence[float]]]

_EPSILON = 1e-9
TASK_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean per-unit difference (candidate - champion) with its two-sided CI over ``units`` (no bounds for a
    single unit: one difference says nothing about its spread)."""

    delta: float
    low: float | None
    high: float | None
    units: int
    se: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else self.high - self.delta


def paired_interval(differences: Sequence[float], confidence: float = TASK_CONFIDENCE) -> Interval | None:
    """Student's t interval of the mean of ``differences`` (one per unit); None without any unit."""
    n = len(differences)
    if n == 0:
        return None
    mean = sum(differences) / n
    if n == 1:
        return Interval(mean, None, None, 1, None)
    se = statistics.stdev(differences) / math.sqrt(n)
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * se
    return Interval(mean, mean - half, mean + half, n, se)


@dataclass(frozen=True)
class MetricComparison:
    """One check. With an ``interval`` the candidate fails only when the whole CI lies below ``-tolerance``;
    without one (a legacy scalar metric) the point difference is compared with ``-tolerance``."""

    name: str
    candidate: float
    champion: float
    tolerance: float
    interval: Interval | None = None

    @property
    def delta(self) -> float:
        return self.interval.delta if self.interval else self.candidate - self.champion

    @property
    def passed(self) -> bool:
        if self.interval is None:
            return self.delta >= -self.tolerance - _EPSILON
        if self.interval.high is None:
            return True  # a single unit cannot show the candidate worse
        return self.interval.high >= -self.tolerance - _EPSILON

    def describe(self) -> str:
        verdict = "" if self.passed else ", WORSE"
        if self.interval is None:
            return (
                f"{self.name} {self.candidate:.4f} vs {self.champion:.4f} ({self.delta:+.4f}, point comparison, "
                f"tolerance {self.tolerance:.4g}{verdict})"
            )
        i = self.interval
        if i.high is None:
            return (
                f"{self.name} {self.candidate:.4f} vs {self.champion:.4f} ({i.delta:+.4f} on 1 unit: no interval, "
                f"cannot show it worse)"
            )
        return (
            f"{self.name} {self.candidate:.4f} vs {self.champion:.4f} (paired over {i.units} units: "
            f"{i.delta:+.4f}, {TASK_CONFIDENCE:.0%} CI [{i.low:+.4f}, {i.high:+.4f}], tolerance {self.tolerance:.4g}"
            f"{verdict})"
        )

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "interval"}
        if self.interval is not None:
            out.update(ci_low=self.interval.low, ci_high=self.interval.high, units=self.interval.units)
        return {**out, "delta": self.delta, "passed": self.passed}


@dataclass(frozen=True)
class GateResult:
    passed: bool
    comparisons: list[MetricComparison]
    notes: list[str] = field(default_factory=list)
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [c.describe() for c in self.comparisons]
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
    candidate: Mapping[str, float],
    champion: Mapping[str, float],
    tolerances: Mapping[str, float],
    intervals: Mapping[str, Interval | None] | None = None,
) -> GateResult:
    """Compare every metric that has a tolerance and was measured on both sides: by its paired interval when
    ``intervals`` has one for it, else by its point difference.

    Fails closed: when no metric could be compared, the candidate is refused.
    """
    comparisons: list[MetricComparison] = []
    notes: list[str] = []
    intervals = intervals or {}
    for name, tolerance in tolerances.items():
        if name in candidate and name in champion:
            comparisons.append(
                MetricComparison(name, float(candidate[name]), float(champion[name]), tolerance, intervals.get(name))
            )
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
    its two-sided ``confidence`` interval (Student's t over users); one user gives the difference alone."""
    users = sorted(set(candidate) & set(champion))
    interval = paired_interval([float(candidate[u]) - float(champion[u]) for u in users], confidence)
    if interval is None:
        return {}
    out = {"task_accuracy_delta": interval.delta, "task_accuracy_paired_users": float(interval.units)}
    bounds = {
        "task_accuracy_delta_se": interval.se,
        "task_accuracy_delta_ci_low": interval.low,
        "task_accuracy_delta_ci_high": interval.high,
        "task_accuracy_ci_half_width": interval.half_width,
    }
    return out | {name: value for name, value in bounds.items() if value is not None}  # none for a single user


def _unit(pair: Any, index: int) -> str:
    """The unit a held-out pair belongs to: its user (pairs of one user share a history), else the pair itself."""
    return str(getattr(pair, "user_id", f"pair-{index}"))


def held_out_pair_intervals(
    pairs: Sequence[Any],
    candidate: tuple[Sequence[float], Sequence[float]],
    champion: tuple[Sequence[float], Sequence[float]],
    beta: float,
) -> dict[str, Interval | None]:
    """Paired intervals of ``pair_accuracy`` and ``pair_margin`` over users: each user's mean difference over its
    held-out pairs is one unit (over pairs when every pair has its own user)."""
    by_unit: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for i, (pair, cc, cr, hc, hr) in enumerate(zip(pairs, *candidate, *champion, strict=True)):
        accuracy = float(cc > cr) - float(hc > hr)
        margin = beta * ((cc - cr) - (hc - hr))
        by_unit[_unit(pair, i)].append((accuracy, margin))
    means = [tuple(sum(col) / len(rows) for col in zip(*rows, strict=True)) for rows in by_unit.values()]
    return {
        "pair_accuracy": paired_interval([m[0] for m in means]),
        "pair_margin": paired_interval([m[1] for m in means]),
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
    """Measure the candidate and the champion the same way, then :func:`decide` on paired intervals."""
    candidate: dict[str, float] = {}
    champion: dict[str, float] = {}
    intervals: dict[str, Interval | None] = {}
    extra_notes: list[str] = []
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
            common = sorted(set(cand_users) & set(champ_users))
            intervals["task_accuracy"] = paired_interval([cand_users[u] - champ_users[u] for u in common])
            if "task_accuracy_delta_ci_low" in paired:
                extra_notes.append(
                    f"task_accuracy paired over {paired['task_accuracy_paired_users']:.0f} users: difference "
                    f"{paired['task_accuracy_delta']:+.4f}, {TASK_CONFIDENCE:.0%} CI "
                    f"[{paired['task_accuracy_delta_ci_low']:+.4f}, {paired['task_accuracy_delta_ci_high']:+.4f}]"
                )
        else:
            for metrics, path in ((candidate, candidate_path), (champion, champion_path)):
                metrics["task_accuracy"] = float(task.task_scorer(task.profile_writer(path, task.users)))
            extra_notes.append("task_accuracy: one score per model (no per-user scorer), a point comparison")
        candidate["validation_users"] = champion["validation_users"] = float(len(task.users))
    if held_out_pairs and pair_logps is not None:
        candidate_logps = pair_logps(candidate_path, held_out_pairs)
        champion_logps = pair_logps(champion_path, held_out_pairs)
        candidate.update(held_out_pair_metrics(*candidate_logps, beta=beta))
        champion.update(held_out_pair_metrics(*champion_logps, beta=beta))
        candidate.update(dpo_reward_metrics(candidate_logps, champion_logps, beta))
        intervals.update(held_out_pair_intervals(held_out_pairs, candidate_logps, champion_logps, beta))
        candidate["held_out_pairs"] = champion["held_out_pairs"] = float(len(held_out_pairs))
        units = next((i.units for i in intervals.values() if i is not None), 1)
        candidate["held_out_units"] = float(units)
    elif not held_out_pairs:
        extra_notes.append("no held-out pairs")
    result = decide(candidate, champion, tolerances, intervals)
    result.notes.extend(extra_notes)
    log.info("%s", result.summary())
    return result
