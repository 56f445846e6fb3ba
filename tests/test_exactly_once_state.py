"""Exactly-once per-user state, without Kafka: the worker stores a user's state and, in the same value, the position
of the last event of each input partition applied to it (lettingo.user_state.UserState.positions). A kill after
the state's changelog record is written and before the partition's applied offset is makes the worker replay
the events since its older applied offset; these tests replay them on the stored state, as the restarted worker
does, and require the state to come out as if each event were applied once."""

from __future__ import annotations

from lettingo.bounds import Evictions, StateBounds
from lettingo.data import LabelScheme
from lettingo.drift import DriftConfig
from lettingo.ingest import IngestLimits, ingest_event
from lettingo.records import Interaction
from lettingo.user_state import UserState, fit_user_state

SOURCE = "interactions:3"
DRIFT = DriftConfig(cold_start_after=3)


def rated(n: int) -> Interaction:
    return Interaction(event_id=f"e{n}", user_id="u", item_id=f"i{n}", kind="rating", rating=4.0, ts=1e9 + n)


def apply(state: UserState, events: range, limits: IngestLimits) -> list:
    return [
        ingest_event(state, rated(n), None, LabelScheme(), DRIFT, limits, Evictions(), position=(SOURCE, n))
        for n in events
    ]


def test_events_replayed_after_a_kill_between_the_state_and_the_applied_offset_are_applied_once() -> None:
    """The bounded ``seen`` ids (here 2) no longer hold the oldest replayed events: only the position stored with
    the state tells that they were applied."""
    limits = IngestLimits(keep_events=20, seen_max=2, bounds=StateBounds())
    state = UserState(user_id="u")
    first = apply(state, range(6), limits)
    stored = fit_user_state(state, 10_000, Evictions())  # the state's changelog record; then the kill
    restarted = UserState.from_bytes(stored)
    replayed = apply(restarted, range(1, 6), limits)  # from the partition's older applied offset (0) on
    assert [step.applied for step in replayed] == [False] * 5
    assert restarted.count == 6 and [e.event_id for e in restarted.events] == [f"e{n}" for n in range(6)]
    assert restarted.to_bytes() == stored
    # What the events caused the first time is returned again, for the outputs the kill may have lost.
    assert [step.rated for step in replayed] == [step.rated for step in first[1:]]
    assert replayed[1].request == first[2].request and first[2].request is not None


def test_the_position_is_kept_in_the_stored_value_and_new_events_go_on_from_it() -> None:
    limits = IngestLimits(keep_events=20, seen_max=100, bounds=StateBounds())
    state = UserState(user_id="u")
    apply(state, range(3), limits)
    restored = UserState.from_bytes(fit_user_state(state, 10_000, Evictions()))
    assert restored.positions == {SOURCE: 2}
    assert restored.has_applied_position(SOURCE, 2) and not restored.has_applied_position(SOURCE, 3)
    assert not restored.has_applied_position("interactions:4", 0)  # another partition: its own positions
    (step,) = apply(restored, range(3, 4), limits)
    assert step.applied and restored.count == 4 and restored.positions == {SOURCE: 3}


def test_an_event_applied_before_by_id_moves_the_position_on() -> None:
    """A duplicate by id at a new position (the same interaction sent twice to the input) is recorded too, so its
    replay is skipped by position."""
    limits = IngestLimits(keep_events=20, seen_max=100, bounds=StateBounds())
    state = UserState(user_id="u")
    ingest_event(state, rated(0), None, LabelScheme(), DRIFT, limits, Evictions(), position=(SOURCE, 0))
    again = ingest_event(state, rated(0), None, LabelScheme(), DRIFT, limits, Evictions(), position=(SOURCE, 1))
    assert not again.applied and state.count == 1 and state.positions == {SOURCE: 1}
