"""``lettingo worker`` (and ``python -m streams.cli.worker``): create missing topics, then run one Faust worker."""

from __future__ import annotations

import asyncio
import sys

import typer

from lettingo.settings import Settings, get_settings
from streams.kafka.topics import create_topics


async def ensure_topics(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    await create_topics(settings)
    admin = AIOKafkaAdminClient(**settings.kafka_client_config())
    await admin.start()
    try:  # the feedback join's sweep topic is the worker's own, co-partitioned with user-keyed topics
        await admin.create_topics(
            [NewTopic(settings.topic("feedback-sweeps"), settings.topic_partitions, settings.topic_replication)]
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


def worker(loglevel: str = typer.Option("info", "--loglevel", "-l", help="Faust log level.")) -> None:
    """Run a stream worker (agents, tables, web views and /metrics on LETTINGO_WEB_PORT)."""
    settings = get_settings()
    asyncio.run(ensure_topics(settings))
    from faust.worker import Worker

    from streams.app import app

    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


def main() -> None:
    typer.run(worker)


if __name__ == "__main__":
    sys.exit(main())
