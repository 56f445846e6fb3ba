"""Bounds on every value a stream worker keeps, and the count of what each bound dropped.

A worker's table value is written to a changelog topic as one Kafka message, so a value that grows without bound
(one user's pending impressions, early clicks, attribute counts, a scoreboard's rewards) ends as a message the
producer refuses, and the worker crashes on every restart. Each structure is therefore capped by count, and the
serialized value by bytes (:func:`fit_user_state`); a cap drops the oldest (or least informative) entries and
counts them in an :class:`Evictions` counter, which the stream layer exports as a metric.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from lettingo.errors import InputError

# What a bound dropped, by name ("history", "seen_ids", "impressions", ...); the worker exports it as a metric.
Evictions = Counter[str]


class StateTooLarge(InputError):
    """A value that cannot be brought under its byte bound by dropping what the bounds allow."""


@dataclass(frozen=True)
class StateBounds:
    max_state_bytes: int = 512 * 1024
    max_attribute_keys: int = 256
    max_event_attributes: int = 32
    max_pending_impressions: int = 64
    max_impression_items: int = 100
    max_early_clicks: int = 256
    max_round_candidates: int = 16
    max_candidate_rewards: int = 512


def cap_counts(counts: dict[str, float], limit: int, evicted: Evictions, what: str) -> None:
    """Keep the ``limit`` largest counts of ``counts`` (in place); ties keep the earlier key."""
    over = len(counts) - limit
    if over <= 0:
        return
    for key in sorted(counts, key=lambda k: counts[k])[:over]:
        del counts[key]
    evicted[what] += over


def check_size(payload: bytes, max_bytes: int, what: str) -> bytes:
    if len(payload) > max_bytes:
        raise StateTooLarge(f"{what}: {len(payload)} bytes is over the bound of {max_bytes}")
    return payload
