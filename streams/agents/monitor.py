"""Gauges that need polling: table sizes of this worker's active partitions, the fill of its in-process caches
and of RocksDB's shared block cache and memtables, and consumer lag.

Lag is the high watermark minus the consumer's position, both from the consumer's public API; the series of a
partition that left this worker's assignment (a rebalance) are removed, so a dashboard never sums stale lag.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from streams import metrics

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)
SAMPLE_EVERY_S = 5.0


def register(worker: Worker) -> None:
    """Declare the timer that samples the gauges of ``worker``."""
    lagged: set[tuple[str, str]] = set()  # (topic, partition) series this worker has exported

    @worker.app.timer(SAMPLE_EVERY_S)
    async def sample_gauges() -> None:
        await sample(worker, lagged)


async def sample(worker: Worker, lagged: set[tuple[str, str]]) -> None:
    """Set the table sizes, the caches' and RocksDB's fill and the lag of every assigned partition; drop the lag
    series in ``lagged`` of partitions no longer assigned, and leave ``lagged`` holding the series set now."""
    for name, table in worker.tables.all().items():
        metrics.TABLE_KEYS.labels(table=name).set(len(table))
    for name, (entries, used, bound) in worker.runtime.caches().items():
        metrics.CACHE_ENTRIES.labels(cache=name).set(entries)
        metrics.CACHE_BYTES.labels(cache=name).set(used)
        metrics.CACHE_MAX_BYTES.labels(cache=name).set(bound)
    for part, used in worker.rocksdb.usage().items():
        metrics.ROCKSDB_BYTES.labels(part=part).set(used)
        metrics.ROCKSDB_MAX_BYTES.labels(part=part).set(worker.rocksdb.bounds[part])
    consumer = worker.app.consumer
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
    for series in lagged - assigned:
        with contextlib.suppress(KeyError):
            metrics.CONSUMER_LAG.remove(*series)
    lagged.clear()
    lagged.update(assigned)
