"""Validation at the edge: decode a raw Faust event into its record, or send it to ``dead-letters``.

Nothing is skipped silently: every message that fails :func:`lettingo.records.decode_record` becomes a
DeadLetter with its reason (empty, oversized, invalid_json, invalid_record), is counted and logged.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import faust

from lettingo.records import DeadLetter, Record, RecordError, decode_record
from streams import faust_topics, metrics
from streams.app import settings

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Record)


def _text(raw: bytes | None, limit: int = 8192) -> str:
    return "" if raw is None else raw[:limit].decode("utf-8", errors="replace")


async def dead_letter(topic: str, partition: int, offset: int, key: bytes | None, payload: bytes | None,
                      reason: str, error: str) -> None:  # fmt: skip
    letter = DeadLetter(
        topic=topic, partition=partition, offset=offset, error=error[:2000], reason=reason,
        payload=_text(payload), key=None if key is None else _text(key, 256),
    )  # fmt: skip
    await (await faust_topics.dead_letters.send(key=key, value=letter.to_bytes()))
    metrics.DEAD_LETTERS.labels(topic=topic, reason=reason).inc()
    log.warning("dead letter topic=%s partition=%s offset=%s key=%s reason=%s: %s",
                topic, partition, offset, letter.key, reason, error)  # fmt: skip


async def decode_event(event: faust.EventT, record_type: type[R]) -> R | None:
    """The event's record, or None once it has been dead-lettered."""
    message = event.message
    try:
        return decode_record(record_type, message.value, settings.input_limits())
    except RecordError as e:
        await dead_letter(
            message.topic, message.partition, message.offset, message.key, message.value, e.reason, str(e)
        )
        return None


def bare_topic(full_name: str) -> str:
    return full_name.removeprefix(settings.topic_prefix)
