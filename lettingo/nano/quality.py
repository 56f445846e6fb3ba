"""Sample quality of a generator on held-out users: diversity, grounding, well-formedness and speed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lettingo.generators.base import Generator
from lettingo.profile_quality import cited_titles, is_well_formed, quality_report
from lettingo.prompts.profile import ProfilePrompt

__all__ = ["SampleReport", "cited_titles", "is_well_formed", "sample_report"]


@dataclass(frozen=True, slots=True)
class SampleReport:
    prompts: int
    samples: int
    distinct_per_prompt: float  # mean share of a prompt's samples that differ from each other
    grounded: float  # share of cited titles that appear in the prompt
    titles_per_sample: float
    well_formed: float
    finished: float  # share that ended with EOS before the token limit
    completion_tokens: float  # mean per sample
    seconds: float
    tokens_per_second: float
    facts: dict[str, Any] | None = None  # lettingo.profile_quality.QualityReport: figures and titles vs the history

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_report(
    generator: Generator,
    prompts: Sequence[ProfilePrompt],
    *,
    n: int = 4,
    temperature: float = 1.0,
    seed: int = 0,
    max_new_tokens: int = 96,
) -> tuple[SampleReport, list[list[str]]]:
    started = time.perf_counter()
    results = generator.generate(list(prompts), n=n, temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)
    seconds = time.perf_counter() - started
    quality = quality_report([(p, [g.text for g in gens]) for p, gens in zip(prompts, results, strict=True)])
    generations = [g for gens in results for g in gens]
    total, tokens = len(generations), sum(g.completion_tokens for g in generations)
    distinct = sum(len({g.text for g in gens}) / len(gens) for gens in results)
    report = SampleReport(
        prompts=len(prompts),
        samples=total,
        distinct_per_prompt=round(distinct / max(1, len(prompts)), 3),
        grounded=1.0 if quality.titles_grounded is None else quality.titles_grounded,
        titles_per_sample=quality.titles_per_profile,
        well_formed=quality.well_formed,
        finished=round(sum(g.finished for g in generations) / max(1, total), 3),
        completion_tokens=round(tokens / max(1, total), 1),
        seconds=round(seconds, 2),
        tokens_per_second=round(tokens / seconds, 1) if seconds else 0.0,
        facts=quality.to_dict(),
    )
    return report, [[g.text for g in gens] for gens in results]
