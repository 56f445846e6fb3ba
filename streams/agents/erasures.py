"""erasures: forgetting a user (``lettingo users forget``) is an event the workers act on.

- Every worker reads the whole compacted ``erasures`` topic (``follow_erasures``) into ``Runtime.erased``;
  :func:`streams.edge.decode_event` then drops, on every agent, each event of a forgotten user that reached Kafka
  before the erasure (not dead-lettered: that would copy the user's data), so no replay, retry or late event
  brings the data back into a table, a reward, a pair or a profile.
- The worker that owns the user's partition (the ``forget`` agent) deletes the user from every user-keyed table
  of the contract (:meth:`streams.tables.Tables.user_keyed`; the deletions
  reach the changelogs, so a restored worker does not see them either) and writes a tombstone to the compacted
  ``profiles`` topic. It keeps a user state begun after the erasure: the follower heard of it first and ingest
  began the user afresh, with events that reached Kafka after the erasure (new data).

Agents that store after an await check again before they store, since an erasure may have been applied
meanwhile: regenerate's publish asks ``Runtime.forgotten``; ingest's flush compares each user's erasure time with
the one it read when it loaded the state, and starts an erased user afresh (:mod:`streams.ingest_batch`). Ingest
also begins afresh a state it loads that was begun before the erasure it knows of: the follower may hear of an
erasure before this agent deletes the state, and storing that state again would undo the deletion
(:mod:`lettingo.ingest_batch`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lettingo.ingest_batch import begun_after
from lettingo.records import Erasure, RecordError
from lettingo.user_state import UserState
from streams import metrics, tables
from streams.agents.follower import follow
from streams.edge import check_key, dead_letter
from streams.kafka.topics import ERASURES
from streams.quarantine import crash_counted
from streams.runtime import Runtime

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)


def remember(runtime: Runtime, erasure: Erasure) -> None:
    runtime.erased[erasure.user_id] = max(erasure.ts, runtime.erased.get(erasure.user_id, 0.0))


def register(worker: Worker) -> None:
    """Declare the forget agent (on the user's owner) and the task that follows every erasure on ``worker``'s app."""
    app, runtime, topic = worker.app, worker.runtime, worker.topics.erasures

    @app.agent(topic.topic)
    @crash_counted
    async def forget(stream):
        async for event in stream.events():
            m = event.message
            try:
                erasure = topic.decode(m.value, runtime.input_limits)
                check_key(erasure, m.key)
            except RecordError as e:
                await dead_letter(worker, m.topic, m.partition, m.offset, m.key, m.value, e.reason, str(e))
                continue
            remember(runtime, erasure)
            key = tables.key(erasure.user_id)
            for table in worker.tables.user_keyed():
                if table is worker.tables.user_state and _begun_after(worker, erasure):
                    continue
                table.pop(key, None)
            await (await worker.topics.profiles.send(key, None))
            metrics.ERASURES.inc()
            log.info(
                "forgot user_id=%s request=%s", erasure.user_id, erasure.request_id, extra={"user_id": erasure.user_id}
            )

    async def remember_message(key: bytes | None, value: bytes | None) -> None:
        try:
            remember(runtime, ERASURES.decode(value, runtime.input_limits))
        except RecordError:
            return  # the forget agent dead-letters it

    @app.task
    async def follow_erasures() -> None:
        await follow(worker.settings, ERASURES.name, remember_message, runtime.erasures_ready)


def _begun_after(worker: Worker, erasure: Erasure) -> bool:
    """Whether the user's stored state holds only events that reached Kafka after ``erasure``: ingest began it
    afresh once it knew of the erasure (:func:`lettingo.ingest_batch.after_erasure`), before this agent got to it.
    A state that does not decode is deleted."""
    try:
        state = tables.load(worker.tables.user_state, erasure.user_id, UserState)
    except tables.CorruptValue:
        return False
    return state is not None and begun_after(state, erasure.ts)
