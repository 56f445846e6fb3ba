"""Replay a ratings dataset into ``items`` and ``interactions``, in time order.

Event ids are derived from (dataset, user, item, timestamp), so replaying the same dataset twice produces
the same ids and the ingest agent, which is idempotent by event id, applies each event once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from lettingo import records
from lettingo.data import Dataset, Rating
from streams.kafka.producer import record_producer
from streams.settings import StreamSettings


def event_id(dataset: str, rating: Rating) -> str:
    return f"{dataset}:{rating.user_id}:{rating.item_id}:{rating.ts}"


def to_interaction(dataset: str, rating: Rating) -> records.Interaction:
    return records.Interaction(
        event_id=event_id(dataset, rating),
        user_id=rating.user_id,
        item_id=rating.item_id,
        kind=records.InteractionKind.RATING,
        rating=rating.rating,
        ts=float(rating.ts),
    )


def to_item_record(item) -> records.Item:
    return records.Item(
        item_id=item.item_id,
        title=item.title[:512],
        attributes=list(item.attributes)[:64],
        year=item.year,
        description=", ".join(item.tags)[:2000] or None,
    )


@dataclass
class ReplayReport:
    items: int
    interactions: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.interactions / self.seconds if self.seconds else 0.0


async def replay(
    settings: StreamSettings,
    dataset: Dataset,
    *,
    speedup: float = 0.0,
    rate: float = 0.0,
    limit: int | None = None,
    send_items: bool = True,
    on_progress: Callable[[int], None] = lambda n: None,
) -> ReplayReport:
    """Send the catalogue, then every rating in time order. ``speedup`` > 0 paces events at that multiple
    of their original spacing (3600 plays an hour of history per second); ``rate`` > 0 caps the events per
    second instead (steady load whatever the dataset's gaps); with neither, events go as fast as possible."""
    ratings = dataset.all_ratings_in_time_order()[:limit]
    started = time.perf_counter()
    async with record_producer(settings) as producer:
        if send_items:
            for item in dataset.items.values():
                await producer.send("items", item.item_id, to_item_record(item))
            await producer.flush()
        n_items = producer.sent
        first_ts = ratings[0].ts if ratings else 0
        for n, rating in enumerate(ratings, start=1):
            due = 0.0
            if speedup > 0:
                due = (rating.ts - first_ts) / speedup - (time.perf_counter() - started)
            elif rate > 0:
                due = n / rate - (time.perf_counter() - started)
            if due > 0.001:
                await producer.flush()  # paced events should reach the broker when they are due, not in a burst
                await asyncio.sleep(due)
            await producer.send("interactions", rating.user_id, to_interaction(dataset.name, rating))
            if n % 1000 == 0:
                on_progress(1000)
        await producer.flush()
        on_progress(len(ratings) % 1000)
        return ReplayReport(n_items, producer.sent - n_items, time.perf_counter() - started)
