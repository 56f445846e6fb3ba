"""Poison-pill quarantine: no single record can crash-loop a worker.

- An event whose processing raises is tried ``poison_retries`` times (with a short backoff, for a transient
  fault), then sent to ``dead-letters`` with the exception (reason ``processing_failed``) and skipped: its
  partition moves on. Kafka client errors are not the event's fault (a broker outage): they propagate, the agent
  restarts and the event is processed again, never dead-lettered.
- A stored table value that does not decode is sent to ``dead-letters`` (reason ``corrupt_state``, topic
  ``table:<name>``, the raw bytes as payload), removed, and the user starts again from an empty value (for
  ``user_state``: a fresh state, so the user's next events count from zero and a cold-start profile follows).
  Readers that do not own a table read such a value as missing (:func:`streams.tables.read`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import faust
from aiokafka.errors import KafkaError
from faust.types import TableT
from pydantic import BaseModel

from lettingo.bounds import Evictions
from streams import metrics, tables
from streams.edge import dead_letter

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
BACKOFF_S = 0.05


async def load_owned(worker: Worker, table: TableT, user_id: str, model: type[M], event: faust.EventT) -> M | None:
    """The owner's read of a table value: one that does not decode is quarantined and read as none."""
    try:
        return tables.load(table, user_id, model)
    except tables.CorruptValue as e:
        await quarantine_value(worker, e, event)
        return None


async def quarantine_value(worker: Worker, e: tables.CorruptValue, event: faust.EventT) -> None:
    message = event.message
    await dead_letter(
        worker,
        f"table:{e.table.name}",
        message.partition,
        -1,
        tables.key(e.user_id),
        e.payload,
        "corrupt_state",
        str(e),
    )
    with tables.event_context(event):
        e.table.pop(tables.key(e.user_id), None)
    metrics.QUARANTINED_STATES.labels(table=e.table.name).inc()


async def guarded(
    worker: Worker, event: faust.EventT, step: Callable[[], Awaitable[T]], agent: str, retries: int
) -> T | None:
    """``await step()``, tried ``retries`` times; then the event is dead-lettered and None returned."""
    error: Exception | None = None
    for attempt in range(retries):
        try:
            return await step()
        except KafkaError:
            raise
        except Exception as e:
            error = e
            message = event.message
            log.warning(
                "agent %s: offset %s of %s raised (try %d of %d): %s: %s",
                agent,
                message.offset,
                message.topic,
                attempt + 1,
                retries,
                type(e).__name__,
                e,
            )
            await asyncio.sleep(BACKOFF_S * 2**attempt)
    await dead_poison(worker, event, agent, error)
    return None


async def dead_poison(worker: Worker, event: faust.EventT, agent: str, error: Exception | None) -> None:
    message = event.message
    await dead_letter(
        worker,
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        "processing_failed",
        f"{agent}: {type(error).__name__}: {error}",
    )
    metrics.POISON_EVENTS.labels(agent=agent).inc()


def count_evictions(table: str, evicted: Evictions) -> None:
    for what, n in evicted.items():
        if n:
            metrics.STATE_EVICTIONS.labels(table=table, what=what).inc(n)
    evicted.clear()


def crash_counted(agent: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Count an agent's crashes (Faust's supervisor restarts it) in ``lettingo_agent_crashes_total``: alert-ready,
    where a crash loop would otherwise show only in the log."""

    async def counted(stream):  # Faust inspects the signature: one positional stream argument
        try:
            await agent(stream)
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.AGENT_CRASHES.labels(agent=agent.__name__).inc()
            raise

    counted.__name__, counted.__qualname__, counted.__doc__ = agent.__name__, agent.__qualname__, agent.__doc__
    counted.__module__ = agent.__module__
    return counted
