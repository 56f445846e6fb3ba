"""erasures: forgetting a user (``lettingo users forget``) is an event the workers act on.

- Every worker reads the whole compacted ``erasures`` topic (:func:`follow_erasures`) into ``RUNTIME.erased``;
  :func:`streams.edge.decode_event` then drops, on every agent, each event of a forgotten user that reached Kafka
  before the erasure (not dead-lettered: that would copy the user's data), so no replay, retry or late event
  brings the data back into a table, a reward, a pair or a profile.
- The worker that owns the user's partition (:func:`forget`) deletes the user from every table (the deletions
  reach the changelogs, so a restored worker does not see them either) and writes a tombstone to the compacted
  ``profiles`` topic.

Agents that store after an await (ingest's flush, regenerate's publish) check ``RUNTIME.forgotten`` again
before they store, since an erasure may have been applied meanwhile.
"""

from __future__ import annotations

import logging

from lettingo.records import Erasure, RecordError, decode_record
from streams import faust_topics, metrics, tables
from streams.agents import RUNTIME
from streams.agents.follower import follow
from streams.app import app, settings
from streams.edge import LIMITS, check_key, dead_letter
from streams.quarantine import crash_counted

log = logging.getLogger(__name__)


def remember(erasure: Erasure) -> None:
    RUNTIME.erased[erasure.user_id] = max(erasure.ts, RUNTIME.erased.get(erasure.user_id, 0.0))


@app.agent(faust_topics.erasures)
@crash_counted
async def forget(stream):
    async for event in stream.events():
        try:
            erasure = decode_record(Erasure, event.message.value, LIMITS)
            check_key(erasure, event.message.key)
        except RecordError as e:
            m = event.message
            await dead_letter(m.topic, m.partition, m.offset, m.key, m.value, e.reason, str(e))
            continue
        remember(erasure)
        key = tables.key(erasure.user_id)
        for table in (tables.user_state, tables.profiles, tables.scoreboard, tables.pending_join):
            table.pop(key, None)
        await (await faust_topics.profiles.send(key=key, value=None))
        metrics.ERASURES.inc()
        log.info(
            "forgot user_id=%s request=%s", erasure.user_id, erasure.request_id, extra={"user_id": erasure.user_id}
        )


async def _remember(key: bytes | None, value: bytes | None) -> None:
    try:
        remember(decode_record(Erasure, value, LIMITS))
    except RecordError:
        return  # the forget agent dead-letters it


@app.task
async def follow_erasures() -> None:
    await follow(settings, "erasures", _remember, RUNTIME.erasures_ready)
