"""The catalogue: validate ``items`` at the edge (grouped agent), and keep all of it in memory (follower)."""

from __future__ import annotations

import logging

from lettingo.records import Item, RecordError, decode_record
from streams import faust_topics, metrics
from streams.agents import RUNTIME
from streams.agents.follower import follow
from streams.app import app, settings
from streams.edge import check_key, decode_event

log = logging.getLogger(__name__)


@app.agent(faust_topics.items)
async def validate_items(stream):
    async for event in stream.events():
        if await decode_event(event, Item) is not None:
            metrics.EVENTS.labels(topic="items", kind="item").inc()


async def _remember(key: bytes | None, value: bytes | None) -> None:
    if value is None and key is not None:
        RUNTIME.catalog.pop(key.decode(errors="replace"), None)
        return
    try:
        item = decode_record(Item, value, settings.input_limits())
        check_key(item, key)
    except RecordError:
        return  # the grouped agent dead-letters it
    RUNTIME.catalog[item.item_id] = item


@app.task
async def follow_catalog() -> None:
    await follow(settings, "items", _remember, RUNTIME.catalog_ready)
