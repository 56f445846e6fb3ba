"""`lettingo topics create|list`."""

from __future__ import annotations

import asyncio

import typer
from aiokafka.errors import KafkaError

from lettingo.cli.errors import UserError
from lettingo.errors import ServiceError
from streams.kafka.access import KafkaAccessError
from streams.kafka.topics import TOPICS, create_topics, partitions_of
from streams.settings import StreamSettings

app = typer.Typer(help="The project's Kafka topics.", no_args_is_help=True)


@app.command()
def create() -> None:
    """Create every topic of the contract with its partition count and compaction (idempotent)."""
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
    """Print the topic contract: name, key, record, partitions, compaction."""
    settings = StreamSettings.load()
    for spec in TOPICS:
        kind = "compacted" if spec.compacted else "delete"
        typer.echo(
            f"{settings.topic(spec.name):<28} key={spec.key:<8} {spec.record.__name__:<18} "
            f"partitions={partitions_of(spec, settings):<3} {kind}{'  (input)' if spec.is_input else ''}"
        )
