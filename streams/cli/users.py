"""``lettingo users forget ID``: tombstones for a user's keys in every compacted topic and table changelog.

Compaction then removes the user's values; a worker restoring a table from its changelog no longer sees them.
Run it with the workers stopped (or restart them after): a running worker keeps its local copy until then.
"""

from __future__ import annotations

import asyncio

import typer

from lettingo.settings import Settings, get_settings
from streams.kafka.producer import record_producer
from streams.kafka.topics import TOPICS

app = typer.Typer(help="Users: forget one (GDPR erasure).", no_args_is_help=True)
TABLES = ("user_state", "profiles", "scoreboard", "pending_join")  # streams.tables.ALL_TABLES, without Faust


def user_keyed_compacted_topics(settings: Settings) -> list[str]:
    topics = [settings.topic(t.name) for t in TOPICS if t.compacted and t.user_keyed]
    return topics + [f"{settings.app_id}-{table}-changelog" for table in TABLES]


async def forget_user(settings: Settings, user_id: str) -> list[str]:
    topics = user_keyed_compacted_topics(settings)
    async with record_producer(settings) as producer:
        for topic in topics:
            # Changelog names carry no topic prefix; send through the raw producer with the full name.
            await producer._producer.send(topic, value=None, key=user_id.encode())
    return topics


@app.command("forget")
def forget(user_id: str = typer.Argument(..., help="The user id to erase.")) -> None:
    """Write tombstones for USER_ID to every compacted topic and table changelog."""
    for topic in asyncio.run(forget_user(get_settings(), user_id)):
        typer.echo(f"tombstone {user_id} -> {topic}")
