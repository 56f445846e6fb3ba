"""Gauges that need polling: table sizes of this worker's active partitions and consumer lag."""

from __future__ import annotations

import logging

from streams import metrics, tables
from streams.app import app

log = logging.getLogger(__name__)


@app.timer(5.0)
async def sample_gauges() -> None:
    for name, table in tables.ALL_TABLES.items():
        metrics.TABLE_KEYS.labels(table=name).set(len(table))
    consumer = app.consumer
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
            position = consumer._read_offset.get(tp)  # faust keeps the last read offset per partition
        except Exception:
            continue
        if highwater is not None and position is not None:
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(
                max(0, highwater - position - 1)
            )
