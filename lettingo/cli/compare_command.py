"""`lettingo compare`: the paper's table on one user group, the standard baselines beside any number of explored
generators, with paired differences (how the demo's report is made, from files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lettingo.cli.errors import UserError
from lettingo.cli.pipeline_commands import (
    DatasetOption,
    GroupOption,
    ReaderOption,
    _load_data,
    _reader,
)
from lettingo.data.split import UserGroup
from lettingo.offline_files import EXPLORE


def _named(option: str, value: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise UserError(f"{option} {value!r}: expected NAME=VALUE")
    return name, rest


def compare(
    candidates: Annotated[
        list[str], typer.Option("--candidates", "-c", help="NAME=explore.jsonl, once per generator.")
    ],
    contrast: Annotated[
        list[str] | None, typer.Option(help="A=B: report the paired difference A - B (names or baselines).")
    ] = None,
    dataset_path: DatasetOption = None,
    reader_path: ReaderOption = None,
    group: GroupOption = UserGroup.TEST,
    targets_per_user: Annotated[int, typer.Option(min=1, help="Final ratings used as targets.")] = 2,
    draws: Annotated[int, typer.Option(min=1, help="Negative draws per ranking target.")] = 10,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples (users are resampled).")] = 1000,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures here.")] = None,
) -> None:
    """Every generator's profiles (from `lettingo explore`) and the baselines through the same f_Rec, both tasks."""
    from lettingo.evaluation import EvaluationConfig
    from lettingo.report import compare as run_compare
    from lettingo.report import markdown_table

    generated = {}
    for value in candidates:
        name, path = _named("--candidates", value)
        if not Path(path).exists():
            raise UserError(f"--candidates {value}: no such file")
        generated[name] = {case.user_id: [c.text for c in case.candidates] for case in EXPLORE.read(Path(path))}
    contrasts = [_named("--contrast", value) for value in contrast or []]
    dataset, split = _load_data(dataset_path)
    users = [u for u in getattr(split, group) if all(u in by_user for by_user in generated.values())]
    if not users:
        raise UserError(f"no {group} user has profiles in every --candidates file")
    config = EvaluationConfig(targets_per_user=targets_per_user, draws=draws)
    result = run_compare(
        dataset, split, _reader(dataset, split, reader_path), users, generated, config, contrasts, resamples
    )
    typer.echo(markdown_table(result))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.as_dict(), indent=2))
