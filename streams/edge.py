"""Validation at the edge: decode a raw Faust event into its record, or send it to ``dead-letters``.

Nothing is skipped silently: every message that fails :func:`lettingo.records.decode_record`, or whose key is not
its record's id (:func:`check_key`), becomes a DeadLetter with its reason, is counted and logged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import faust
from pydantic import BaseModel

from lettingo.records import DeadLetter, Item, RecordError
from streams import metrics
from streams.faust_topics import BoundTopic
from streams.kafka.topics import R
from streams.runtime import Runtime

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)


def _text(raw: bytes | None, limit: int = 8192) -> str:
    return "" if raw is None else raw[:limit].decode("utf-8", errors="replace")


async def dead_letter(
    worker: Worker,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    payload: bytes | None,
    reason: str,
    error: str,
) -> None:
    letter = DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        error=error[:2000],
        reason=reason,
        payload=_text(payload),
        key=None if key is None else _text(key, 256),
    )
    await (await worker.topics.dead_letters.send(key, letter.to_bytes()))
    metrics.DEAD_LETTERS.labels(topic=topic, reason=reason).inc()
    log.warning(
        "dead letter topic=%s partition=%s offset=%s key=%s reason=%s: %s",
        topic,
        partition,
        offset,
        letter.key,
        reason,
        error,
        extra={"reason": reason},
    )


def check_key(record: BaseModel, key: bytes | None) -> None:
    """The message key must be the record's own id (``item_id`` for items, ``user_id`` for every user-keyed
    record): tables are partitioned by key, so an event under another key would fork the user's state onto
    another partition, or be applied twice under two keys."""
    field = "item_id" if isinstance(record, Item) else "user_id"
    expected = getattr(record, field, None)
    if expected is None:
        return
    if key is None:
        raise RecordError("missing_key", f"the message has no key; expected its {field}")
    if key != expected.encode():
        raise RecordError("key_mismatch", f"the key is not the record's {field}")


async def decode_event(worker: Worker, event: faust.EventT, topic: BoundTopic[R]) -> R | None:
    """The event's record, decoded as ``topic``'s (the event's own topic), or None once it has been
    dead-lettered."""
    message = event.message
    try:
        record = topic.decode(message.value, worker.runtime.input_limits)
        check_key(record, message.key)
    except RecordError as e:
        await dead_letter(
            worker, message.topic, message.partition, message.offset, message.key, message.value, e.reason, str(e)
        )
        return None
    user_id = getattr(record, "user_id", None)
    if user_id is not None and await _forgotten(worker.runtime, user_id, message.timestamp):
        metrics.FORGOTTEN_EVENTS.labels(topic=topic.spec.name).inc()
        return None
    return record


async def _forgotten(runtime: Runtime, user_id: str, arrived: float | None) -> bool:
    """Whether the event predates its user's erasure (streams.agents.erasures): dropped, not dead-lettered."""
    if not runtime.erasures_ready.is_set():
        await runtime.erasures_ready.wait()  # once, at start-up: until every erasure is read, none is known
    return runtime.forgotten(user_id, arrived)
