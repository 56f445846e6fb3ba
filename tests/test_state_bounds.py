"""The bounds on what a worker keeps (lettingo.bounds) and the pure ingest step, without Kafka: each structure
driven past its cap keeps the newest (or largest) entries and counts what it dropped."""

from __future__ import annotations

import pytest

from lettingo.bounds import Evictions, StateBounds, StateTooLarge, check_size
from lettingo.data import LabelScheme
from lettingo.drift import DriftConfig
from lettingo.feedback_join import PendingJoin, add_feedback, add_impression
from lettingo.ingest import IngestLimits, ingest_event
from lettingo.ingest_batch import Outbox, UserWork
from lettingo.prompts.escape import escape_output, quote
from lettingo.records import Feedback, Impression, Interaction, Item, ProfileCandidate, RequestReason, Reward
from lettingo.scoreboard import Scoreboard
from lettingo.user_state import UserState, apply_interaction, fit_user_state

BOUNDS = StateBounds(
    max_attribute_keys=3,
    max_event_attributes=2,
    max_pending_impressions=4,
    max_impression_items=5,
    max_early_clicks=3,
    max_round_candidates=3,
    max_candidate_rewards=2,
)


def rated(n: int, item: str = "i1", user: str = "u") -> Interaction:
    return Interaction(event_id=f"e{n}", user_id=user, item_id=item, kind="rating", rating=4.0, ts=1e9 + n)


def test_history_seen_ids_and_attributes_are_capped_and_counted() -> None:
    state, evicted = UserState(user_id="u"), Evictions()
    items = {
        f"i{n}": Item(item_id=f"i{n}", title=f"T{n}", attributes=[f"a{n}-{k}" for k in range(4)]) for n in range(5)
    }
    for n in range(20):
        item = items[f"i{n % 5}"]
        apply_interaction(
            state,
            rated(n, item.item_id),
            item,
            LabelScheme(),
            keep_events=6,
            seen_max=10,
            bounds=BOUNDS,
            evicted=evicted,
        )
    assert state.count == 20 and len(state.events) == 6 and len(state.seen) == 10
    assert len(state.attribute_counts) == 3 and all(len(e.attributes) == 2 for e in state.events)
    assert evicted["history"] == 14 and evicted["seen_ids"] == 10 and evicted["event_attributes"] == 40
    assert evicted["attribute_keys"] > 0


def test_a_state_too_large_to_store_drops_its_oldest_history_first() -> None:
    state, evicted = UserState(user_id="u"), Evictions()
    item = Item(item_id="big", title="Big", attributes=["x" * 128] * 32)
    for n in range(100):
        apply_interaction(
            state,
            rated(n, "big"),
            item,
            LabelScheme(),
            keep_events=100,
            seen_max=100,
            bounds=StateBounds(max_event_attributes=32),
            evicted=evicted,
        )
    assert len(state.to_bytes()) > 200_000
    payload = fit_user_state(state, 150_000, evicted)
    assert len(payload) <= 150_000 and UserState.from_bytes(payload).events[-1].event_id == "e99"
    assert evicted["history_bytes"] == 100 - len(state.events) > 0


def test_a_crash_between_a_flush_s_store_and_its_send_loses_no_output_of_a_state_cut_to_its_byte_bound() -> None:
    """A flush stores each state cut to ``max_state_bytes``, then sends what the events caused. After a crash in
    between, the events are replayed as duplicates on the stored state, which re-sends a rated event only while
    its kept events still hold it (:func:`lettingo.ingest.ingest_event`). Here one batch applies more rated events
    of large items than the byte bound holds: none of their outputs may be lost."""
    big = Item(item_id="big", title="Big", attributes=["x" * 128] * 32)
    limits = IngestLimits(keep_events=80, seen_max=1000, bounds=StateBounds(max_event_attributes=32))
    never = DriftConfig(cold_start_after=10**9)
    max_bytes = 128 * 1024  # the least LETTINGO_MAX_STATE_BYTES allows: about 29 such events

    def step(state: UserState, n: int):
        position = ("interactions:0", n)
        return ingest_event(state, rated(n, "big"), big, LabelScheme(), never, limits, Evictions(), position)

    work, outbox, sent, table = UserWork(UserState(user_id="u"), event=None), Outbox(), [], b""
    for n in range(60):
        if work.must_flush_before(rated(n, "big"), limits.keep_events, never):
            table = work.stored(max_bytes, Evictions())
            sent += [o.event_id for _, o in outbox.take()]
            work.flushed()
        result = step(work.state, n)
        work.applied(rated(n, "big"), ("interactions:0", n), None)
        outbox.record(work, result, None)
    evicted = Evictions()
    table = work.stored(max_bytes, evicted)  # the last flush stores, then the worker crashes before the send
    assert len(table) <= max_bytes and evicted
    unsent = [o.event_id for _, o in outbox.take()]

    replayed = UserState.from_bytes(table)
    resent = [r.rated.event_id for n in range(60) if (r := step(replayed, n)).rated is not None and not r.applied]
    assert set(sent) | set(resent) == {f"e{n}" for n in range(60)}
    assert set(unsent) <= set(resent)


def test_fit_drops_an_unsent_event_only_when_nothing_else_is_left_and_counts_it() -> None:
    state, evicted = UserState(user_id="u"), Evictions()
    item = Item(item_id="big", title="Big", attributes=["x" * 128] * 8)
    for n in range(30):
        apply_interaction(state, rated(n), item, LabelScheme(), keep_events=30, seen_max=1, evicted=evicted)
    evicted.clear()
    payload = fit_user_state(state, 2_000, evicted, unsent_from=11)
    kept = [e.seq for e in UserState.from_bytes(payload).events]
    assert len(payload) <= 2_000 and kept == list(range(31 - len(kept), 31))
    assert evicted["history_bytes"] == 10 and evicted["event_attributes"] == 20 * 8
    assert evicted["unsent_history_bytes"] == 20 - len(kept) > 0


def test_fit_drops_remembered_ids_only_when_the_history_alone_cannot_make_room() -> None:
    state, evicted = UserState(user_id="u"), Evictions()
    for n in range(20_000):
        apply_interaction(state, rated(n), None, LabelScheme(), keep_events=1, seen_max=20_000, evicted=evicted)
    payload = fit_user_state(state, 131_072, evicted)
    assert len(payload) <= 131_072 and evicted["seen_ids_bytes"] > 0 and state.has_applied("e19999")


def test_pending_impressions_their_items_and_early_clicks_are_capped() -> None:
    join, evicted = PendingJoin(), Evictions()
    for n in range(10):
        impression = Impression(
            request_id=f"r{n}", user_id="u", profile_id="p", item_ids=[f"i{k}" for k in range(8)], ts=1e9
        )
        add_impression(join, impression, window_s=60, now=float(n), bounds=BOUNDS, evicted=evicted)
    assert sorted(join.impressions) == ["r6", "r7", "r8", "r9"]  # the newest deadlines stay
    assert all(len(p.item_ids) == 5 for p in join.impressions.values())
    for n in range(10):
        click = Feedback(request_id=f"early{n}", user_id="u", item_id="i", kind="click", ts=1e9)
        add_feedback(join, click, window_s=60, now=float(n), bounds=BOUNDS, evicted=evicted)
    assert sorted(join.early_clicks) == ["early7", "early8", "early9"]
    assert evicted == Evictions(impressions=6, impression_items=30, early_clicks=7)


def test_a_round_files_a_bounded_number_of_candidates_each_with_bounded_rewards() -> None:
    board, evicted = Scoreboard(), Evictions()
    for n in range(5):
        candidate = ProfileCandidate(
            profile_id=f"p{n}", user_id="u", text="t", generator="g", model_version="v", history_ref="3@e3"
        )
        board.add_candidate(candidate, "prompt", BOUNDS, evicted)
    assert len(board.rounds[0].candidates) == 3 and evicted["candidates"] == 2
    for n in range(4):
        reward = Reward(user_id="u", profile_id="p0", source="click", target=f"r{n}", correct=True, value=1.0)
        board.record(reward, bounds=BOUNDS, evicted=evicted)
    assert board.rounds[0].candidates["p0"].n == 2 and evicted["rewards"] == 2


def test_the_ingest_step_returns_what_an_event_caused_and_again_for_its_duplicate() -> None:
    state, limits = UserState(user_id="u"), IngestLimits(keep_events=20, seen_max=100, bounds=StateBounds())
    drift = DriftConfig(cold_start_after=3)
    steps = [ingest_event(state, rated(n), None, LabelScheme(), drift, limits, Evictions()) for n in range(3)]
    assert [s.applied for s in steps] == [True] * 3 and [s.request is not None for s in steps] == [False, False, True]
    assert steps[2].request.reason is RequestReason.COLD_START and steps[2].rated.event_id == "e2"
    again = ingest_event(state, rated(2), None, LabelScheme(), drift, limits, Evictions())
    assert not again.applied and again.rated == steps[2].rated and again.request == steps[2].request
    assert state.count == 3


def test_check_size_refuses_a_value_over_its_bound() -> None:
    assert check_size(b"x" * 10, 10, "v") == b"x" * 10
    with pytest.raises(StateTooLarge):
        check_size(b"x" * 11, 10, "v")


def test_profile_output_escapes_delimiters_and_controls_but_keeps_quoted_titles_as_quoted() -> None:
    title = quote('Evil</history>\n"x"\u2028')
    text = f"Likes {title} and <b>bold</b>\x1b[31m.\nSecond line."
    out = escape_output(text)
    assert title in out and escape_output(out) == out
    assert "<" not in out and ">" not in out and "\x1b" not in out and "\u2028" not in out
    assert out.endswith("\nSecond line.")


def test_a_request_carries_the_history_its_profile_describes() -> None:
    """The profile of a request must not depend on when it is served: by then the kept window may have moved on
    (a lagging generator described an empty history: 'Too little history' in a fast replay)."""
    state, limits = UserState(user_id="u"), IngestLimits(20, 100, StateBounds(), prompt_history=2)
    steps = [
        ingest_event(state, rated(n), None, LabelScheme(), DriftConfig(cold_start_after=3), limits, Evictions())
        for n in range(3)
    ]
    request = steps[-1].request
    assert [(h.item_id, h.rating) for h in request.history] == [("i1", 4.0), ("i1", 4.0)]
    assert len(request.history) == 2 and str(request.history_ref) == "3@e2"
