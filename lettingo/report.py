"""The paper's comparison table on test users, with the same frozen f_Rec for every system, as Markdown.

Systems are the baselines of :mod:`lettingo.baselines` plus any number of generators (the base model, SFT on
P+, the DPO-aligned policy), each given as the profiles it wrote per user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lettingo.baselines import Baseline, SystemOutcomes, candidates_source, paired_difference, run_baseline
from lettingo.data import Dataset, DatasetSplit
from lettingo.evaluation import EvaluationConfig
from lettingo.metrics_stats import Estimate
from lettingo.recommenders.base import Recommender, Task

METRICS = {Task.RANKING: ("hr@1", "hr@5", "ndcg@5"), Task.SENTIMENT: ("accuracy", "macro_f1", "weighted_f1")}
HEADLINE = {Task.RANKING: "hr@1", Task.SENTIMENT: "accuracy"}


@dataclass
class Comparison:
    """Every system's metrics per task, and paired differences against a reference system."""

    users: int
    config: EvaluationConfig
    metrics: dict[Task, dict[str, dict[str, Estimate]]] = field(default_factory=dict)
    cases: dict[Task, dict[str, int]] = field(default_factory=dict)
    differences: dict[Task, dict[tuple[str, str], Estimate]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "users": self.users,
            "config": self.config.as_dict(),
            "metrics": {
                t.value: {s: {m: e.as_dict() for m, e in ms.items()} for s, ms in by.items()}
                for t, by in self.metrics.items()
            },
            "cases": {t.value: c for t, c in self.cases.items()},
            "differences": {
                t.value: {f"{a} - {b}": e.as_dict() for (a, b), e in d.items()} for t, d in self.differences.items()
            },
        }


def compare(
    dataset: Dataset,
    split: DatasetSplit,
    reader: Recommender,
    users: Sequence[str],
    generated: Mapping[str, Mapping[str, Sequence[str]]],
    config: EvaluationConfig,
    contrasts: Sequence[tuple[str, str]] = (),
    resamples: int = 1000,
) -> Comparison:
    """Run the standard baselines and every generator in ``generated`` (name -> user -> profiles) on both
    tasks; ``contrasts`` lists (a, b) pairs whose paired difference a - b is reported."""
    from lettingo.baselines import standard_baselines

    systems = standard_baselines(dataset) + [
        Baseline(name, candidates_source(by_user)) for name, by_user in generated.items()
    ]
    out = Comparison(len(users), config)
    for task in (Task.RANKING, Task.SENTIMENT):
        runs: dict[str, SystemOutcomes] = {
            s.name: run_baseline(s, task, reader, dataset, split, config, users) for s in systems
        }
        out.metrics[task] = {name: run.metrics(resamples) for name, run in runs.items()}
        out.cases[task] = {name: len(run.outcomes) for name, run in runs.items()}
        out.differences[task] = {
            (a, b): paired_difference(runs[a], runs[b], HEADLINE[task], resamples)
            for a, b in contrasts
            if a in runs and b in runs
        }
    return out


def _pct(e: Estimate) -> str:
    return f"{100 * e.value:.1f} [{100 * e.low:.1f}, {100 * e.high:.1f}]"


def markdown_table(comparison: Comparison) -> str:
    """One table a task: a row a system, each metric in percent with its 95 % bootstrap interval (users resampled)."""
    parts = []
    for task, by_system in comparison.metrics.items():
        names = METRICS[task]
        parts.append(f"**{task.value}** ({comparison.users} test users)\n")
        parts.append("| system | cases | " + " | ".join(names) + " |")
        parts.append("|---|---:|" + "---:|" * len(names))
        for system, estimates in by_system.items():
            cells = " | ".join(_pct(estimates[m]) for m in names)
            parts.append(f"| {system} | {comparison.cases[task][system]} | {cells} |")
        for (a, b), diff in comparison.differences.get(task, {}).items():
            verdict = "excludes 0" if diff.low > 0 or diff.high < 0 else "includes 0"
            parts.append(
                f"\n{a} - {b}, {HEADLINE[task]}: {100 * diff.value:+.1f} points, paired bootstrap 95 % CI "
                f"[{100 * diff.low:+.1f}, {100 * diff.high:+.1f}] ({verdict})"
            )
        parts.append("")
    return "\n".join(parts)
