"""`lettingo topics create|list`."""

from __future__ import annotations

import asyncio

import typer
from aiokafka.errors import KafkaError

from lettingo.cli.errors import UserError
from lettingo.errors import ServiceError
from streams.kafka.access import KafkaAccessError
from streams.kafka.topics import ALL_TOPICS, TABLES, create_topics, partitions_of
from streams.settings import StreamSettings

app = typer.Typer(help="The project's Kafka topics.", no_args_is_help=True)


@app.command()
def create() -> None:
    """Create every topic of the contract and the workers' internal ones, with partitions and compaction
    (idempotent); the tables' changelogs are created by the workers' Faust app."""
    settings = StreamSettings.load()
    try:
        report = asyncio.run(create_topics(settings))
    except KafkaAccessError:
        raise  # already one line that says what is wrong (a UserError)
    except KafkaError as e:
        raise ServiceError(
            f"cannot reach Kafka at {settings.bootstrap}: {e} (is `lettingo broker start` running?)"
        ) from e
    for name, state in report:
        typer.echo(f"{name:<28} {state}")
    if any(state.startswith("MISMATCH") for _, state in report):
        raise UserError("some topics exist with another partition count; user-keyed topics must match")


@app.command("list")
def list_topics() -> None:
    """Print the topic contract: name, key, record, partitions, compaction; internal and changelog topics too."""
    settings = StreamSettings.load()
    for spec in ALL_TOPICS:
        kind = "compacted" if spec.compacted else "delete"
        record = spec.record.__name__ if spec.record else "-"
        role = "  (input)" if spec.is_input else "  (internal)" if spec.internal else ""
        typer.echo(
            f"{settings.topic(spec.name):<28} key={spec.key or '-':<8} {record:<18} "
            f"partitions={partitions_of(spec, settings):<3} {kind}{role}"
        )
    for table in TABLES:
        typer.echo(
            f"{table.changelog(settings):<28} key={table.key!r} table {table.name}: {table.value}, "
            f"partitions={partitions_of(table, settings)} {'compacted' if table.compacted else 'delete'}  (changelog)"
        )
