"""``lettingo explore``: candidate profiles per user to a JSONL file, resumable.

One JSON line per (user, target position), flushed as it is written; on restart, cases already in the file
are skipped and a torn last line (a crash mid-write) is cut off first (:data:`lettingo.offline_files.EXPLORE`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated

import typer

from lettingo.cli.errors import UserError
from lettingo.cli.pipeline_commands import GroupOption
from lettingo.data.split import UserGroup
from lettingo.offline_files import EXPLORE
from lettingo.settings import Settings

log = logging.getLogger(__name__)
_COUNT_PREFIX = re.compile(r"^(\d+)\*(.+)$")


def parse_source(value: str, default_n: int) -> tuple[str, int]:
    """``SPEC`` or ``N*SPEC`` (N samples from that generator)."""
    m = _COUNT_PREFIX.match(value.strip())
    return (m.group(2), int(m.group(1))) if m else (value.strip(), default_n)


def explore(
    generator: Annotated[
        list[str],
        typer.Option(
            "--generator",
            "-g",
            help="Generator spec, or 'N*SPEC' for N samples (e.g. 8*hf:.lettingo/models/nano-..., 2*writer:mix).",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output JSONL (appended to; finished cases are skipped).")],
    dataset: Annotated[
        Path | None, typer.Argument(help="Dataset folder or .jsonl [default: LETTINGO_DATASET].")
    ] = None,
    group: GroupOption = UserGroup.TRAIN,
    n: Annotated[int, typer.Option(min=1, help="Samples per generator when the spec has no 'N*' prefix.")] = 4,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature for model backends.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 96,
    targets_per_user: Annotated[
        int, typer.Option(min=1, help="Target positions per user (each gets its own H_u).")
    ] = 1,
    offset: Annotated[
        int, typer.Option(min=0, help="1 starts at the validation item (never look at the final target).")
    ] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N cases (for smoke runs).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Users per generation call.")] = 16,
    max_prompt_tokens: Annotated[
        int | None,
        typer.Option(
            min=64,
            help="Keep only the most recent history lines whose prompt fits this many tokens of the first model "
            "generator (a pretrained model spends about 25 tokens a line: 70 lines are some 2,000).",
        ),
    ] = None,
) -> None:
    """Explore K candidate profiles per user from several generators; writes one JSON line per user and position."""
    from tqdm import tqdm

    from lettingo.data import DatasetFormatError, LabelScheme, load_dataset, split_dataset
    from lettingo.explore import ExploreSource
    from lettingo.explore import explore as explore_cases
    from lettingo.generators import GeneratorError, GeneratorSpecError, make_generator, parse_spec

    specs = [parse_source(g, n) for g in generator]
    try:
        for spec, _ in specs:
            parse_spec(spec)  # reject every bad spec before loading any model
        data = load_dataset(dataset or Settings.load().dataset)
    except (GeneratorSpecError, DatasetFormatError) as e:
        raise UserError(str(e)) from e
    cases = split_dataset(data).cases(data, group, targets_per_user=targets_per_user, offset=offset)
    cases = cases[:limit] if limit else cases
    done = EXPLORE.finished(out)
    todo = [c for c in cases if (c.user_id, c.position) not in done]
    log.info("explore: %d cases, %d already in %s, %d to go", len(cases), len(cases) - len(todo), out, len(todo))
    if not todo:
        return
    try:
        sources = [ExploreSource(make_generator(s), count, temperature, max_new_tokens) for s, count in specs]
    except (GeneratorError, GeneratorSpecError) as e:
        raise UserError(str(e)) from e
    labels = LabelScheme.for_scale(data.integer_scale)
    build = _prompt_builder(sources, max_prompt_tokens)
    try:
        with EXPLORE.append(out) as sink, tqdm(total=len(todo), desc="explore", unit="case") as bar:
            cases_out = explore_cases(
                todo, data.items, sources, labels=labels, seed=seed, batch_size=batch_size, build_prompt=build
            )
            for user in cases_out:
                sink.write(user.to_record())
                bar.update(1)
    finally:
        for source in sources:
            source.generator.close()


def _prompt_builder(sources, max_prompt_tokens: int | None):
    """All of H_u, or the most recent lines within ``max_prompt_tokens`` of the first model generator."""
    from lettingo.prompts.profile import profile_prompt_from_entries, profile_prompt_within

    if max_prompt_tokens is None:
        return profile_prompt_from_entries
    encoders = [s.generator for s in sources if hasattr(s.generator, "encode")]
    if not encoders:
        raise UserError("--max-prompt-tokens needs an hf or vllm generator to count tokens with")
    generator = encoders[0]
    return lambda entries, user: profile_prompt_within(
        entries, lambda prompt: len(generator.encode(prompt)), max_prompt_tokens, user
    )
