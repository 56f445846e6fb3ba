"""`lettingo replay DATASET`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from tqdm import tqdm

from lettingo.cli.errors import UserError
from lettingo.data import DatasetFormatError, load_dataset
from lettingo.errors import ServiceError
from lettingo.logsafe import configure_safe_logging
from streams.replay import replay as run_replay
from streams.settings import StreamSettings


def replay(
    dataset: Annotated[
        Path, typer.Argument(help="ml-latest CSV folder, MovieLens-100K folder, or interactions .jsonl")
    ],
    speedup: Annotated[
        float, typer.Option(min=0, help="Pace events at this multiple of real time; 0 = as fast as possible.")
    ] = 0.0,
    rate: Annotated[
        float, typer.Option(min=0, help="Send at most this many interactions per second; 0 = no cap.")
    ] = 0.0,
    limit: Annotated[int | None, typer.Option(min=1, help="Send only the first N interactions.")] = None,
    items: Annotated[bool, typer.Option(help="Send the item catalogue to `items` first.")] = True,
) -> None:
    """Send a dataset into `items` and `interactions` in time order."""
    settings = StreamSettings.load()
    # a broker outage would otherwise log every reconnect attempt (issue 14)
    configure_safe_logging(json_lines=settings.log_format == "json")
    try:
        data = load_dataset(dataset)
    except DatasetFormatError as e:
        raise UserError(str(e)) from e
    total = min(data.n_ratings, limit or data.n_ratings)
    with tqdm(total=total, unit="ev", desc="replay", disable=None) as bar:
        try:
            report = asyncio.run(
                run_replay(
                    settings, data, speedup=speedup, rate=rate, limit=limit, send_items=items, on_progress=bar.update
                )
            )
        except KafkaError as e:
            raise ServiceError(
                f"Kafka at {settings.bootstrap}: {e} (is the broker running and are topics created?)"
            ) from e
    typer.echo(
        f"sent {report.interactions} interactions and {report.items} items from {data.name} "
        f"in {report.seconds:.1f} s ({report.rate:,.0f} interactions/s)"
    )
