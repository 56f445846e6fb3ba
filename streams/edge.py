"""Validation at the edge: decode a raw Faust event into its record, or send it to ``dead-letters``.

Nothing is skipped silently: every message that fails :func:`lettingo.records.decode_record`, or whose key is not
its record's id (:func:`check_key`), becomes a DeadLetter with its reason, is counted and logged.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import faust

from lettingo.records import DeadLetter, Item, Record, RecordError, decode_record
from streams import faust_topics, metrics
from streams.app import runtime, settings

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Record)
LIMITS = settings.input_limits()


def _text(raw: bytes | None, limit: int = 8192) -> str:
    return "" if raw is None else raw[:limit].decode("utf-8", errors="replace")


async def dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, payload: bytes | None, reason: str, error: str
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
    await (await faust_topics.dead_letters.send(key=key, value=letter.to_bytes()))
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


def check_key(record: Record, key: bytes | None) -> None:
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


async def decode_event(event: faust.EventT, record_type: type[R]) -> R | None:
    """The event's record, or None once it has been dead-lettered."""
    message = event.message
    try:
        record = decode_record(record_type, message.value, LIMITS)
        check_key(record, message.key)
    except RecordError as e:
        await dead_letter(
            message.topic, message.partition, message.offset, message.key, message.value, e.reason, str(e)
        )
        return None
    user_id = getattr(record, "user_id", None)
    if user_id is not None and await _forgotten(user_id, message.timestamp):
        metrics.FORGOTTEN_EVENTS.labels(topic=bare_topic(message.topic)).inc()
        return None
    return record


async def _forgotten(user_id: str, arrived: float | None) -> bool:
    """Whether the event predates its user's erasure (streams.agents.erasures): dropped, not dead-lettered."""
    if not runtime.erasures_ready.is_set():
        await runtime.erasures_ready.wait()  # once, at start-up: until every erasure is read, none is known
    return runtime.forgotten(user_id, arrived)


def bare_topic(full_name: str) -> str:
    return full_name.removeprefix(settings.topics.prefix)
