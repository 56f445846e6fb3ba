"""ingest: ``interactions`` -> the user_state table; drift or cold start -> ``profile-requests``; each newly
applied rated event -> ``rated-events`` (task evaluation's input).

Ingest is the only consumer of ``interactions``: Faust commits one offset per topic-partition for the whole
app, so a second agent on the topic could commit past events this one never applied.
"""

from __future__ import annotations

import logging

from lettingo.drift import decide
from lettingo.records import Interaction, ProfileRequest
from lettingo.stream_eval import EvalTrigger
from lettingo.user_state import HistoryEvent, UserState, apply_interaction
from streams import faust_topics, metrics, tables
from streams.agents import RUNTIME
from streams.app import app
from streams.applied import AppliedOffsets
from streams.edge import decode_event

log = logging.getLogger(__name__)
APPLIED = AppliedOffsets(app, tables.applied_offsets)
WATCH_EVERY_S = 3.0


@app.agent(faust_topics.interactions)
async def ingest(stream):
    with APPLIED.working():  # read-ahead while the catalogue loads is not a gap
        await RUNTIME.catalog_ready.wait()  # attributes come from the catalogue: read it before the first event
    async for event in stream.events():
        if not await APPLIED.admit(event):  # applied before, or Faust skipped events before it: see streams.applied
            continue
        await apply(event)
        APPLIED.applied(event)  # after every effect of the event, so a crash before it replays the event


@app.timer(WATCH_EVERY_S)
async def watch_applied() -> None:
    await APPLIED.watch(faust_topics.interactions.get_topic_name())


async def apply(event) -> None:
    interaction = await decode_event(event, Interaction)
    if interaction is None:
        return
    metrics.EVENTS.labels(topic="interactions", kind=interaction.kind.value).inc()
    state = tables.load(tables.user_state, interaction.user_id, UserState) or UserState(user_id=interaction.user_id)
    applied = apply_interaction(
        state, interaction, RUNTIME.catalog.get(interaction.item_id), RUNTIME.labels,
        keep_events=RUNTIME.keep_events, seen_max=RUNTIME.settings.seen_events_max,
    )  # fmt: skip
    request = None
    rated = None
    if applied:
        rated = state.events[-1]
        decision = decide(state, RUNTIME.drift)
        if decision.score:
            metrics.DRIFT_SCORE.observe(decision.score)
        if decision.reason is not None:
            request = ProfileRequest(
                user_id=state.user_id, reason=decision.reason, drift_score=decision.score,
                ts=state.last_ts, history_ref=state.history_ref,
            )  # fmt: skip
            state.mark_profiled()
            state.last_request = request.model_dump_json()
    else:
        metrics.DUPLICATES.inc()
        # A replay after a crash: the state may be stored while the request it caused was never sent.
        last = ProfileRequest.model_validate_json(state.last_request) if state.last_request else None
        if last is not None and last.history_ref.endswith(f"@{interaction.event_id}"):
            request = last
        # ... and the rated event it forwarded (task evaluation drops what it already rewarded).
        rated = next((e for e in state.events if e.event_id == interaction.event_id), None)
    # Stored again even for a duplicate, so the changelog catches up with the local store after a crash.
    tables.store(tables.user_state, state.user_id, state)
    if rated is not None and rated.rating is not None:
        await forward_rated(state.user_id, rated)
    if request is not None:
        await (await faust_topics.profile_requests.send(key=tables.key(request.user_id), value=request.to_bytes()))
        metrics.PROFILE_REQUESTS.labels(reason=request.reason.value).inc()
        log.info("profile request user_id=%s reason=%s drift=%.3f history=%s",
                 request.user_id, request.reason.value, request.drift_score, request.history_ref)  # fmt: skip


async def forward_rated(user_id: str, event: HistoryEvent) -> None:
    """Hand an applied rated event, with its position in the user's sequence, to task evaluation."""
    trigger = EvalTrigger(user_id=user_id, event_id=event.event_id, seq=event.seq, item_id=event.item_id,
                          rating=event.rating, ts=event.ts)  # fmt: skip
    await (await faust_topics.rated_events.send(key=tables.key(user_id), value=trigger.to_bytes()))
