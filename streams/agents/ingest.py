"""ingest: batches of ``interactions`` -> the user_state table; drift or cold start -> ``profile-requests``; each
newly applied rated event -> ``rated-events`` (task evaluation's input).

Ingest is the only consumer of ``interactions``: Faust commits one offset per topic-partition for the whole
app, so a second agent on the topic could commit past events this one never applied.

The agent is a loop: admit each event of a batch (:mod:`streams.applied` passes over what was applied before),
apply the batch (:func:`streams.ingest_batch.apply_batch`: states stored, then what they caused sent and
acknowledged), wait until the states are on the broker, then record the batch as applied. So a state is on the
broker before the offset that says it is applied, and a crash before that offset is written replays the batch.

A batch is the fetched chunks of ``interactions`` waiting in a :class:`streams.faust_adapter.BulkSink`
(acked together once applied) or, with ``app.bulk_ingest`` off, what Faust's ``take_events`` takes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from streams import faults
from streams.applied import AppliedOffsets
from streams.faust_adapter import bulk_sink, consume_batches, flush
from streams.ingest_batch import apply_batch
from streams.kafka.offsets import first_offset_from
from streams.quarantine import crash_counted

if TYPE_CHECKING:
    import faust

    from streams.app import Worker

log = logging.getLogger(__name__)
WATCH_EVERY_S = 3.0
BATCH_MAX = 1000  # interactions taken at once at most
# The longest wait to fill a batch: the latency a trickle of events pays. With a backlog the wait is Faust handing
# the buffer its events one by one (it does not read ahead while a batch is applied), so a longer wait makes larger
# batches: fewer state reads and writes, fewer waits for the broker.
BATCH_WITHIN_S = 0.2


def register(worker: Worker) -> None:
    """Declare the ingest agent and the watchdog of its applied offsets on ``worker``'s app."""
    app, runtime = worker.app, worker.runtime
    applied = runtime.guard(
        AppliedOffsets(app, worker.tables.applied_offsets, partial(first_offset_from, worker.settings))
    )
    topic = worker.topics.interactions
    # With a sink the consumer hands the topic's fetched records to it, not to the stream.
    sink = bulk_sink(app, topic.name, worker.settings.app.bulk_ingest)

    async def apply_events(events: Sequence[faust.EventT]) -> None:
        with applied.working():
            # Applied before, or Faust skipped events before it: see streams.applied.
            admitted = [event for event in events if await applied.admit(event)]
            await apply_batch(worker, admitted)
            faults.crash_point("ingest", admitted)  # test-only: off unless STREAMS_TEST_CRASH_AT names ingest
            # The batch's state writes are on the broker before the offset that says they are applied: the applied
            # offset never runs ahead of the stored states (each holds its own position: streams.ingest_batch.step).
            await flush(app)
            applied.applied_batch(admitted)  # after every effect of the batch, so a crash before it replays it

    @app.agent(topic.topic)  # subscribes the topic (assignment, tables' co-partitioning) on either path
    @crash_counted
    async def ingest(stream):
        with applied.working():  # read-ahead while the catalogue loads is not a gap
            await runtime.catalog_ready.wait()  # attributes come from the catalogue: read it before the first event
        # A batch is acked even when it raised: the applied-offsets guard seeks back to what was not applied.
        await consume_batches(app, stream, sink, BATCH_MAX, BATCH_WITHIN_S, apply_events)

    @app.timer(WATCH_EVERY_S)
    async def watch_applied() -> None:
        try:
            await applied.watch(topic.name)
            await applied.sample_lag(topic.name, worker.settings.app.stall_seconds)
        except Exception:  # a timer that raises stops the worker; a rebalance under way is retried in a few seconds
            log.warning(
                "watching the applied offsets of %s failed; trying again at the next tick", topic.name, exc_info=True
            )
