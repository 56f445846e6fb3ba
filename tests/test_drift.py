"""The drift detector and the idempotent user state, without Kafka."""

from __future__ import annotations

import base64
import json

from lettingo.data import LabelScheme
from lettingo.drift import DriftConfig, decide, jensen_shannon
from lettingo.records import Interaction, Item, RequestReason
from lettingo.user_state import SeenIds, UserState, apply_interaction

ITEMS = {
    "h": Item(item_id="h", title="H", attributes=["Horror"]),
    "c": Item(item_id="c", title="C", attributes=["Comedy"]),
}
CONFIG = DriftConfig(threshold=0.2, min_new_events=3, cooldown_seconds=0, cold_start_after=3)


def feed(state: UserState, item: str, rating: float, n: int) -> bool:
    event = Interaction(event_id=f"e{n}", user_id="u", item_id=item, kind="rating", rating=rating, ts=float(n))
    return apply_interaction(state, event, ITEMS[item], LabelScheme(), keep_events=80, seen_max=1000)


def test_jensen_shannon_is_zero_for_equal_and_one_for_disjoint_distributions():
    assert jensen_shannon({"a": 1, "b": 1}, {"a": 5, "b": 5}) == 0.0
    assert abs(jensen_shannon({"a": 1}, {"b": 1}) - 1.0) < 1e-9
    assert jensen_shannon({}, {"a": 1}) == 0.0


def test_cold_start_then_drift_only_when_the_distribution_moves():
    state = UserState(user_id="u")
    decisions = []
    for n in range(3):
        feed(state, "h", 5, n)
        decisions.append(decide(state, CONFIG).reason)
    assert decisions == [None, None, RequestReason.COLD_START]
    state.mark_profiled()
    for n in range(3, 8):
        feed(state, "h", 5, n)
        assert not decide(state, CONFIG).request  # same taste: no drift
    for n in range(8, 11):
        feed(state, "c", 1, n)
    decision = decide(state, CONFIG)
    assert decision.reason is RequestReason.DRIFT and decision.score >= 0.2


def test_min_new_evidence_and_cooldown_hold_a_request_back():
    state = UserState(user_id="u")
    for n in range(3):
        feed(state, "h", 5, n)
    state.mark_profiled()
    feed(state, "c", 1, 3)
    assert not decide(state, CONFIG).request  # one new event is not enough evidence
    for n in range(4, 6):
        feed(state, "c", 1, n)
    assert not decide(state, DriftConfig(0.2, 3, cooldown_seconds=1e6, cold_start_after=3)).request
    assert decide(state, CONFIG).request


def test_the_score_is_measured_only_where_it_decides_past_the_cooldown():
    state = UserState(user_id="u")
    for n in range(3):
        feed(state, "h", 5, n)
    state.mark_profiled()
    for n in range(3, 6):
        feed(state, "c", 1, n)
    within = decide(state, DriftConfig(0.2, 3, cooldown_seconds=1e6, cold_start_after=3))
    past = decide(state, DriftConfig(0.2, 3, cooldown_seconds=1.0, cold_start_after=3))
    # Inside the cooldown nothing can be requested: the divergence is not computed (most events of an active user
    # fall there, and it was the largest single cost of ingesting one), so the histogram holds deciding scores.
    assert (within.reason, within.score) == (None, 0.0)
    assert past.reason is RequestReason.DRIFT and past.score >= 0.2


def test_a_replayed_event_changes_the_state_once():
    state = UserState(user_id="u")
    assert feed(state, "h", 5, 1)
    before = state.model_copy(deep=True)
    assert not feed(state, "h", 5, 1)
    assert state == before and state.count == 1


def test_seen_ids_are_stored_compactly_bounded_and_still_deduplicate_after_a_reload():
    state = UserState(user_id="u")
    for n in range(5):
        feed(state, "h", 5, n)
    stored = json.loads(state.to_bytes())
    assert isinstance(stored["seen"], str) and len(base64.b64decode(stored["seen"])) == 5 * 8
    reloaded = UserState.from_bytes(state.to_bytes())
    assert reloaded == state
    assert not feed(reloaded, "h", 5, 3) and reloaded.count == 5  # still a duplicate after the round trip
    event = Interaction(event_id="e9", user_id="u", item_id="h", kind="rating", rating=5, ts=9.0)
    assert apply_interaction(reloaded, event, ITEMS["h"], LabelScheme(), keep_events=80, seen_max=3)
    assert len(reloaded.seen) == 3 and reloaded.has_applied("e9") and not reloaded.has_applied("e0")


def test_a_state_stored_with_seen_as_a_list_of_hex_digests_still_loads():
    state = UserState(user_id="u")
    for n in range(3):
        feed(state, "h", 5, n)
    legacy = json.loads(state.to_bytes())
    legacy["seen"] = [digest.hex() for digest in state.seen]
    assert UserState.model_validate_json(json.dumps(legacy)) == state


def test_seen_ids_match_whole_digests_only_whether_scanned_or_looked_up_in_a_set():
    a, b = bytes(range(8)), bytes(range(8, 16))
    seen = SeenIds([a, b])
    straddling = a[4:] + b[:4]
    assert a in seen and b in seen and straddling not in seen  # the first lookups scan the packed bytes
    for _ in range(SeenIds.SCANS):
        seen.__contains__(a)
    assert a in seen and b in seen and straddling not in seen  # by now from a set
    seen.add(bytes(range(16, 24)), limit=2)
    assert a not in seen and b in seen and len(seen) == 2


def textbook_js(p: dict[str, float], q: dict[str, float]) -> float:
    """The definition, term by term: the mean m of the two normalised vectors, then the mean of KL(p||m) and
    KL(q||m) in bits."""
    from math import log2

    keys = p.keys() | q.keys()
    p_total, q_total = sum(max(v, 0.0) for v in p.values()), sum(max(v, 0.0) for v in q.values())
    if not p_total or not q_total:
        return 0.0
    x = {k: max(p.get(k, 0.0), 0.0) / p_total for k in keys}
    y = {k: max(q.get(k, 0.0), 0.0) / q_total for k in keys}
    m = {k: (x[k] + y[k]) / 2 for k in keys}
    kl_x = sum(x[k] * log2(x[k] / m[k]) for k in keys if x[k] > 0)
    kl_y = sum(y[k] * log2(y[k] / m[k]) for k in keys if y[k] > 0)
    return (kl_x + kl_y) / 2


def test_the_drift_score_is_the_textbook_divergence_of_what_was_added_since_the_profile():
    import random

    from lettingo.drift import drift_score

    rnd = random.Random(7)
    for _ in range(500):
        keys = [f"g{i}" for i in range(rnd.randint(0, 12))]
        current = {k: float(rnd.randint(0, 40)) for k in keys if rnd.random() < 0.8}
        reference = {k: float(rnd.randint(0, 30)) for k in keys if rnd.random() < 0.7}
        added = {k: v - reference.get(k, 0.0) for k, v in current.items() if v - reference.get(k, 0.0) > 0}
        state = UserState(
            user_id="u",
            attribute_counts=current,
            reference_attributes=reference,
            sentiment_counts={"like": 2.0},
            reference_sentiments={"like": 1.0},
        )
        assert abs(jensen_shannon(current, reference) - textbook_js(current, reference)) < 1e-12
        assert abs(drift_score(state) - textbook_js(added, reference)) < 1e-12
