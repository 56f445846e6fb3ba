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
    cited = grounded = well = finished = tokens = 0
    distinct = 0.0
    for prompt, gens in zip(prompts, results, strict=True):
        allowed = set(t.strip() for t in prompt.quoted_titles)
        distinct += len({g.text for g in gens}) / len(gens)
        for g in gens:
            titles = cited_titles(g.text)
            cited += len(titles)
            grounded += sum(t in allowed for t in titles)
            well += is_well_formed(g.text)
            finished += g.finished
            tokens += g.completion_tokens
    total = sum(len(g) for g in results)
    report = SampleReport(
        prompts=len(prompts),
        samples=total,
        distinct_per_prompt=round(distinct / max(1, len(prompts)), 3),
        grounded=round(grounded / cited, 3) if cited else 1.0,
        titles_per_sample=round(cited / max(1, total), 2),
        well_formed=round(well / max(1, total), 3),
        finished=round(finished / max(1, total), 3),
        completion_tokens=round(tokens / max(1, total), 1),
        seconds=round(seconds, 2),
        tokens_per_second=round(tokens / seconds, 1) if seconds else 0.0,
        facts=quality_report([(p, [g.text for g in gens]) for p, gens in zip(prompts, results, strict=True)]).to_dict(),
    )
    return report, [[g.text for g in gens] for gens in results]
