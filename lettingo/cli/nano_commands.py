"""``lettingo nano``: build the nano model and look at its samples."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from lettingo.cli.errors import UserError
from lettingo.settings import Settings

app = typer.Typer(help="The nano model: a ~2M-parameter Llama trained on the profile writers.", no_args_is_help=True)
log = logging.getLogger(__name__)


def _dataset(dataset: Path | None) -> Path:
    path = dataset or Settings.load().dataset
    if not path.exists():
        raise UserError(f"dataset {path} does not exist (pass --dataset or set LETTINGO_DATASET)")
    return path


@app.command("build")
def build(
    dataset: Annotated[Path | None, typer.Option(help="Dataset folder or .jsonl [default: LETTINGO_DATASET].")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for built models [default: LETTINGO_HOME/models].")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small, fast build for tests and smoke runs.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for data sampling, initialisation and training.")] = 0,
    steps: Annotated[int | None, typer.Option(min=1, help="SFT steps [default: from the config].")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads (1: reproducible, best when busy).")] = 1,
) -> None:
    """Build the nano model (or find it already built) and print its folder."""
    from lettingo.data import DatasetFormatError
    from lettingo.nano import NanoConfig, build_nano, read_manifest

    config = (NanoConfig.quick() if quick else NanoConfig()).with_overrides(seed=seed, steps=steps)
    try:
        path = build_nano(_dataset(dataset), out or Settings.load().path("models"), config, threads=threads)
    except DatasetFormatError as e:
        raise UserError(str(e)) from e
    manifest = read_manifest(path) or {}
    log.info(
        "nano %s: %s parameters, final SFT loss %s, built in %s s",
        path.name,
        manifest.get("parameters"),
        sft.get("final_loss") if isinstance(sft := manifest.get("sft"), dict) else None,
        manifest.get("build_seconds"),
    )
    typer.echo(str(path))


@app.command("sample")
def sample(
    model: Annotated[Path, typer.Argument(help="A built model folder (from `lettingo nano build`).")],
    dataset: Annotated[Path | None, typer.Option(help="Dataset folder or .jsonl [default: LETTINGO_DATASET].")] = None,
    users: Annotated[int, typer.Option(min=1, help="Validation users to sample for.")] = 8,
    n: Annotated[int, typer.Option(min=1, help="Samples per user.")] = 4,
    temperature: Annotated[float, typer.Option(min=0.0)] = 1.0,
    seed: Annotated[int, typer.Option()] = 0,
    show: Annotated[int, typer.Option(min=0, help="Users whose samples are printed.")] = 2,
) -> None:
    """Sample profiles for validation users; print diversity, grounding and speed as JSON."""
    from lettingo.data import LabelScheme, load_dataset, split_dataset
    from lettingo.generators import GeneratorError, make_generator
    from lettingo.nano.quality import sample_report
    from lettingo.prompts.profile import profile_prompt

    data = load_dataset(_dataset(dataset))
    labels = LabelScheme.for_scale(data.integer_scale)
    cases = split_dataset(data).cases(data, "validation")[:users]
    prompts = [profile_prompt(c.long_history, data.items, labels) for c in cases]
    try:
        generator = make_generator(f"hf:{model}")
    except GeneratorError as e:
        raise UserError(str(e)) from e
    report, texts = sample_report(generator, prompts, n=n, temperature=temperature, seed=seed)
    for prompt, samples in list(zip(prompts, texts, strict=True))[:show]:
        typer.echo(f"--- user {prompt.user_id} ({len(prompt.entries)} items in H_u)")
        for t in samples:
            typer.echo(f"  * {t}")
    typer.echo(json.dumps(report.to_dict(), indent=2))
