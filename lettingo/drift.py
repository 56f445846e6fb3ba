"""When does a user need a new profile?

Cold start: the first profile is requested once a user has ``cold_start_after`` interactions.

Drift: compare what the user did *since the last profile* with what they had done *when it was profiled*, as
two distributions, over item attributes (genres) and over sentiments (like / neutral / dislike). The score is
the larger of the two Jensen-Shannon divergences (base 2, so it lies in [0, 1]). A request is emitted when

- at least ``min_new_events`` interactions arrived since the last profile (too little evidence is noise),
- at least ``cooldown_seconds`` of event time passed since the last request (no request storms), and
- the score reaches ``threshold``.

The score is computed only once the evidence and the cooldown allow a request, where it decides; the drift score
histogram shows those scores, the ones the threshold acts on.

Everything is a function of the event stream (counts and event timestamps, never the wall clock), so a replay
of the same stream emits the same requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import log2

from lettingo.records import RequestReason
from lettingo.user_state import UserState


@dataclass(frozen=True, slots=True)
class DriftConfig:
    threshold: float = 0.15
    min_new_events: int = 5
    cooldown_seconds: float = 86_400.0
    cold_start_after: int = 5


@dataclass(frozen=True, slots=True)
class DriftDecision:
    reason: RequestReason | None  # None: no request
    score: float  # the drift score (0 at cold start or when not measured)

    @property
    def request(self) -> bool:
        return self.reason is not None


def jensen_shannon(p_counts: Mapping[str, float], q_counts: Mapping[str, float]) -> float:
    """JS divergence (base 2) between two count vectors; 0 when either is empty (nothing to compare).

    Negative counts count as 0."""
    return _divergence(p_counts, q_counts, {})


def _divergence(p_counts: Mapping[str, float], q_counts: Mapping[str, float], base: Mapping[str, float]) -> float:
    """JS divergence (base 2) between ``p_counts`` less ``base`` (what was added since ``base``) and ``q_counts``.

    Computed for every applied event past the minimum evidence, so in one pass over the keys, without normalising
    the two vectors first: with a, b the counts and A, B their totals, a key adds (a/A) log2(2aB / (aB + bA)) and
    (b/B) log2(2bA / (aB + bA)), which is x log2(x/m) + y log2(y/m) for the shares x, y and their mean m. The keys
    are sorted, so that the sums do not depend on the order of the dictionaries."""
    keys = sorted(p_counts.keys() | q_counts.keys())
    p_get, q_get, base_get = p_counts.get, q_counts.get, base.get
    pairs = []
    p_total = q_total = 0.0
    for k in keys:
        a = p_get(k)
        a = 0.0 if a is None else a - base_get(k, 0.0)
        b = q_get(k, 0.0)
        a = a if a > 0 else 0.0
        b = b if b > 0 else 0.0
        p_total += a
        q_total += b
        pairs.append((a, b))
    if not p_total or not q_total:
        return 0.0
    kl_p = kl_q = 0.0
    for a, b in pairs:
        a_q, b_p = a * q_total, b * p_total
        mixed = a_q + b_p
        if a_q > 0:
            kl_p += a * log2(2 * a_q / mixed)
        if b_p > 0:
            kl_q += b * log2(2 * b_p / mixed)
    return max(0.0, min(1.0, (kl_p / p_total + kl_q / q_total) / 2))


def drift_score(state: UserState) -> float:
    """The larger of the attribute and the sentiment divergences between what the user did since the last profile
    and what they had done when it was profiled."""
    reference_attributes, reference_sentiments = state.reference_attributes, state.reference_sentiments
    attributes = _divergence(state.attribute_counts, reference_attributes, reference_attributes)
    sentiments = _divergence(state.sentiment_counts, reference_sentiments, reference_sentiments)
    return max(attributes, sentiments)


def may_request_next(state: UserState, ts: float, config: DriftConfig) -> bool:
    """Whether applying one more new event, of event time ``ts``, to ``state`` can make :func:`decide` request a
    profile: False is certain (too little evidence since the last profile, or within its cooldown)."""
    count = state.count + 1
    if state.requests == 0:
        return count >= config.cold_start_after
    if count - state.profiled_at < config.min_new_events:
        return False
    return max(state.last_ts, ts) - state.profiled_ts >= config.cooldown_seconds


def decide(state: UserState, config: DriftConfig) -> DriftDecision:
    if state.requests == 0:
        if state.count >= config.cold_start_after:
            return DriftDecision(RequestReason.COLD_START, 0.0)
        return DriftDecision(None, 0.0)
    if state.count - state.profiled_at < config.min_new_events:
        return DriftDecision(None, 0.0)
    if state.last_ts - state.profiled_ts < config.cooldown_seconds:
        # Not measured where it cannot decide: most events of an active user fall inside the cooldown, and the two
        # divergences were the largest single cost of ingesting one (bench ingest's profile).
        return DriftDecision(None, 0.0)
    score = drift_score(state)
    return DriftDecision(RequestReason.DRIFT if score >= config.threshold else None, score)
