"""One interaction applied to a user's state: the state transition and what it causes, without any I/O.

The stream's ingest agent calls :func:`ingest_event` for each event and sends what it returns; a retry after a
failure rebuilds the state by calling it again on the same events, so it must stay deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

from lettingo.bounds import Evictions, StateBounds
from lettingo.data import LabelScheme
from lettingo.drift import DriftConfig, decide
from lettingo.records import Interaction, Item, ProfileRequest, RatedItem
from lettingo.user_state import HistoryEvent, UserState, apply_interaction


@dataclass(frozen=True)
class IngestStep:
    applied: bool  # False: a duplicate (applied before), the state unchanged
    rated: HistoryEvent | None = None  # the rated event to forward to task evaluation (re-sent for a duplicate)
    request: ProfileRequest | None = None  # a profile request it caused (re-sent for a duplicate)
    drift_score: float = 0.0


@dataclass(frozen=True)
class IngestLimits:
    keep_events: int
    seen_max: int
    bounds: StateBounds
    prompt_history: int = 70  # the latest events a profile prompt shows (H_u), carried by each request


def ingest_event(
    state: UserState,
    interaction: Interaction,
    item: Item | None,
    labels: LabelScheme,
    drift: DriftConfig,
    limits: IngestLimits,
    evicted: Evictions,
    position: tuple[str, int] | None = None,
) -> IngestStep:
    """Apply ``interaction`` to ``state`` in place and decide whether it drifted (or cold-started) the user.

    ``position`` is where the event sits in its input (source, position): the state records the last one applied
    per source, in the same value, so an event at or below it is a duplicate even when the bounded ``seen`` ids
    no longer hold its id. For a duplicate (a replay after a crash) nothing changes, but what the event caused the
    first time is returned again: the state may have been stored while the rated event and the request it caused
    were never sent (task evaluation drops what it already rewarded; regenerate, a stale request)."""
    if position is not None and state.has_applied_position(*position):
        return _replayed(state, interaction)
    applied = apply_interaction(
        state,
        interaction,
        item,
        labels,
        keep_events=limits.keep_events,
        seen_max=limits.seen_max,
        bounds=limits.bounds,
        evicted=evicted,
    )
    if position is not None:
        state.positions[position[0]] = position[1]
    if not applied:
        return _replayed(state, interaction)
    newest = state.events[-1]
    decision = decide(state, drift)
    request = None
    if decision.reason is not None:
        shown = state.events[-limits.prompt_history :]
        request = ProfileRequest(
            user_id=state.user_id,
            reason=decision.reason,
            drift_score=decision.score,
            ts=state.last_ts,
            history_ref=state.history_ref,
            history=[RatedItem(item_id=e.item_id, rating=e.rating) for e in shown if e.rating is not None],
        )
        state.mark_profiled()
        state.last_request = request.model_dump_json()
    return IngestStep(True, newest if newest.rating is not None else None, request, decision.score)


def _replayed(state: UserState, interaction: Interaction) -> IngestStep:
    """A duplicate: the state unchanged, what the event caused the first time returned again (while the kept
    window and the last request still hold it)."""
    rated = next((e for e in state.events if e.event_id == interaction.event_id), None)
    last = ProfileRequest.model_validate_json(state.last_request) if state.last_request else None
    caused = last is not None and last.history_ref is not None and last.history_ref.event_id == interaction.event_id
    return IngestStep(
        False, rated if rated is not None and rated.rating is not None else None, last if caused else None
    )
