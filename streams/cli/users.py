"""``lettingo users forget ID``: publish an erasure that the running workers act on (GDPR erasure).

The erasure goes to the compacted ``erasures`` topic (streams.agents.erasures): the worker that owns the user's
partition deletes the user from every user-keyed table of the topic contract (``streams.kafka.topics.TABLES``;
the deletions reach the changelogs) and tombstones the user's
``profiles`` record; every worker drops any event of the user that reached Kafka before the erasure. Workers do
not need to be stopped; one started later acts on the erasure when it starts. Records of the user in the
non-compacted topics stay until their retention deletes them, and no later state, reward, pair or training
round reads them (README, "Security and privacy").
"""

from __future__ import annotations

import asyncio

import typer

from lettingo.records import Erasure
from streams.kafka.producer import record_producer
from streams.kafka.topics import ERASURES
from streams.settings import StreamSettings

app = typer.Typer(help="Users: forget one (GDPR erasure).", no_args_is_help=True)


async def forget_user(settings: StreamSettings, user_id: str) -> Erasure:
    erasure = Erasure(user_id=user_id)
    async with record_producer(settings) as producer:
        await producer.send(ERASURES.name, user_id, erasure)
    return erasure


@app.command("forget")
def forget(user_id: str = typer.Argument(..., help="The user id to erase.")) -> None:
    """Publish an erasure of USER_ID: running workers delete the user's state and profile at once."""
    settings = StreamSettings.load()
    erasure = asyncio.run(forget_user(settings, user_id))
    typer.echo(f"erasure {erasure.request_id} of {user_id} published to {settings.topic(ERASURES.name)}")
