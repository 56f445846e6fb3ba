"""The catalogue: validate ``items`` at the edge (grouped agent), and keep all of it in memory (follower)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lettingo.records import RecordError
from streams import metrics
from streams.agents.follower import follow
from streams.edge import check_key, decode_event
from streams.kafka.topics import ITEMS

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    """Declare the items agent (validation) and the task that follows the whole catalogue on ``worker``'s app."""
    app, runtime = worker.app, worker.runtime

    @app.agent(worker.topics.items.topic)
    async def validate_items(stream):
        async for event in stream.events():
            if await decode_event(worker, event, worker.topics.items) is not None:
                metrics.EVENTS.labels(topic=ITEMS.name, kind="item").inc()

    async def remember(key: bytes | None, value: bytes | None) -> None:
        if value is None and key is not None:
            runtime.catalog.pop(key.decode(errors="replace"), None)
            return
        try:
            item = ITEMS.decode(value, runtime.input_limits)
            check_key(item, key)
        except RecordError:
            return  # the grouped agent dead-letters it
        runtime.catalog[item.item_id] = item

    @app.task
    async def follow_catalog() -> None:
        await follow(worker.settings, ITEMS.name, remember, runtime.catalog_ready)
