"""`lettingo demo`: the whole loop on the local defaults, live, ending in a report."""

from __future__ import annotations

from pathlib import Path

import typer

from lettingo.cli.errors import UserError
from lettingo.data import DatasetFormatError
from streams.settings import StreamSettings


def demo(
    dataset: Path = typer.Option(None, "--dataset", help="Dataset to replay [LETTINGO_DATASET]."),
    quick: bool = typer.Option(False, "--quick", help="A subset of users and the quick nano model (a few minutes)."),
    users: int = typer.Option(None, min=10, help="Replay only about this many users."),
    max_ratings: int = typer.Option(
        None, "--max-ratings-per-user", min=10, help="Replay only each user's latest ratings (quick: 120)."
    ),
    rate: float = typer.Option(None, min=0, help="Interactions per second replayed; 0 = as fast as possible."),
    min_pairs: int = typer.Option(None, min=1, help="Preference pairs per trainer round."),
    runs_root: Path = typer.Option(Path("runs"), "--runs", help="Where runs/<timestamp>/ goes."),
) -> None:
    """Broker, nano policy, frozen f_Rec, a worker and the trainer, a replay with live progress, then the report."""
    from streams.demo.run import Demo, DemoConfig, DemoError

    settings = StreamSettings.load()
    path = dataset or settings.dataset
    if not path.exists():
        raise UserError(f"--dataset {path}: no such file or folder")
    config = DemoConfig.for_mode(
        path, quick, users=users, max_ratings_per_user=max_ratings, rate=rate, min_pairs=min_pairs, runs_root=runs_root
    )
    try:
        Demo(settings, config).run()
    except (DatasetFormatError, DemoError) as e:
        raise UserError(str(e)) from e
