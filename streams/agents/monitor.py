"""Gauges that need polling: table sizes of this worker's active partitions and consumer lag.

Lag is the high watermark minus the consumer's position, both from the consumer's public API; the series of a
partition that left this worker's assignment (a rebalance) are removed, so a dashboard never sums stale lag.
"""

from __future__ import annotations

import contextlib
import logging

from streams import metrics, tables
from streams.app import app

log = logging.getLogger(__name__)
_LAGGED: set[tuple[str, str]] = set()  # (topic, partition) series this worker has exported


@app.timer(5.0)
async def sample_gauges() -> None:
    for name, table in tables.ALL_TABLES.items():
        metrics.TABLE_KEYS.labels(table=name).set(len(table))
    consumer = app.consumer
    assigned = set()
    for tp in consumer.assignment():
        try:
            highwater, position = consumer.highwater(tp), await consumer.position(tp)
        except Exception as e:  # a partition leaving mid-rebalance: sampled again in 5 s
            log.debug("no lag for %s: %r", tp, e)
            continue
        if highwater is None or position is None:
            continue
        series = (tp.topic, str(tp.partition))
        assigned.add(series)
        metrics.CONSUMER_LAG.labels(*series).set(max(0, highwater - position))
    for series in _LAGGED - assigned:
        with contextlib.suppress(KeyError):
            metrics.CONSUMER_LAG.remove(*series)
    _LAGGED.clear()
    _LAGGED.update(assigned)
