"""Delivery of a batch of ``interactions`` (the ingest agent's one core call, :func:`apply_batch`): states into the
user_state table, profile requests to ``profile-requests``, each newly applied rated event to ``rated-events``
(task evaluation's input).

A batch loads each of its users' states once, applies that user's events in order (the drift decision after each
one, exactly as one by one: :func:`lettingo.ingest.ingest_event`) and stores each changed state at each flush,
under the partition of that user's latest event: once at the end of the batch, and at each flush in the middle of
it. A flush stores the states, then sends what the events caused, in event order; the last one waits for the
broker to take all of it before the batch is recorded as applied (:mod:`streams.applied`). A state is stored
before what it caused is sent, because regenerate and task evaluation read the state a request or a rated event
refers to. When a user's next event must wait for a flush is decided in :mod:`lettingo.ingest_batch`; such a
flush in the middle of a batch does not wait: the batch goes on applying while the broker acknowledges the
outputs, and the next flush waits for that acknowledgement before it stores any state, so no stored state is
ever ahead of an output the broker may not have. If the batch raises, what was handed to the producer is still
awaited (its requests counted) before the error goes on.

A state begun before the user's latest erasure known when it is loaded is not worked on: the erasure follower
may have heard of the erasure before the forget agent deleted the state, and storing it again would bring the
forgotten history back; the batch begins a fresh one (:func:`lettingo.ingest_batch.after_erasure`). A user erased
while the batch ran (:mod:`streams.agents.erasures`; the erasure noted when the state was loaded differs at a
flush) is started afresh: the state loaded before the erasure is not stored, the outputs queued for the user are
dropped, and the events since the last flush that reached Kafka after the erasure are applied again on a fresh
state (:meth:`lettingo.ingest_batch.UserWork.restart_after_erasure`).

An event whose processing raises is tried again on the user's state rebuilt from the table and the user's events
applied since the last flush; after ``poison_retries`` tries it is dead-lettered and skipped (streams.quarantine).
A stored state that does not decode is quarantined and the user starts afresh. Each stored state is cut to
``max_state_bytes`` (the oldest history dropped first, never an event whose output is not sent yet unless nothing
else is left: :meth:`lettingo.ingest_batch.UserWork.stored`), so no table write can exceed what the producer sends.

The outputs go out as one record batch per topic partition (:class:`streams.faust_adapter.BatchSender`), not one
``Topic.send`` each.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import faust

from lettingo.bounds import Evictions
from lettingo.ingest import IngestStep, ingest_event
from lettingo.ingest_batch import Outbox, Position, UserWork, after_erasure
from lettingo.records import Interaction, ProfileRequest
from lettingo.stream_eval import EvalTrigger
from lettingo.user_state import HistoryEvent, UserState
from streams import faults, metrics, tables
from streams.applied import source_position
from streams.edge import decode_event
from streams.faust_adapter import BatchSender
from streams.quarantine import count_evictions, dead_poison, quarantine_value

if TYPE_CHECKING:
    from streams.app import Worker
    from streams.runtime import Runtime

log = logging.getLogger(__name__)


async def load_state(worker: Worker, user_id: str, event: faust.EventT) -> UserState:
    """The stored state, or a fresh one; a state that does not decode is quarantined (streams.quarantine)."""
    with tables.event_context(event):
        try:
            return tables.load(worker.tables.user_state, user_id, UserState) or UserState(user_id=user_id)
        except tables.CorruptValue as e:
            await quarantine_value(worker, e, event)
            return UserState(user_id=user_id)


@dataclass
class Batch:
    worker: Worker
    users: dict[str, UserWork[faust.EventT]] = field(default_factory=dict)
    outbox: Outbox = field(default_factory=Outbox)
    evicted: Evictions = field(default_factory=Evictions)
    sending: tuple[BatchSender, list[ProfileRequest]] | None = None  # the last flush's outputs, not yet acked

    async def work(self, user_id: str, event: faust.EventT) -> UserWork[faust.EventT]:
        work = self.users.get(user_id)
        if work is None:
            erased_at = self.worker.runtime.erased.get(user_id)  # noted before the load: an erasure after it shows
            work = self.users[user_id] = UserWork.loaded(
                await load_state(self.worker, user_id, event), event, erased_at
            )
        work.event = event
        return work

    def restart_erased(self) -> None:
        """Start afresh each user erased since their state was loaded (see the module's doc); with no await between
        this and the stores, no erasure can be learned in between."""
        runtime = self.worker.runtime
        for user_id, work in self.users.items():
            erased_at = runtime.erased.get(user_id)
            if erased_at is None or not work.erased_since_load(erased_at):
                continue
            self.outbox.drop(user_id)
            for interaction, position, arrived in work.restart_after_erasure(erased_at):
                result = step(runtime, work.state, interaction, self.evicted, position)
                work.applied(interaction, position, arrived)
                self.outbox.record(work, result, arrived)

    async def flush(self, *, wait: bool = True) -> None:
        """Store every changed state, then send the outputs; wait until the broker has them all, or (``wait``
        False) only before the next flush stores anything: a state stored after an output never reaches the
        changelog before the broker has that output, and the batch goes on applying its next events meanwhile."""
        await self.wait_acked()
        worker = self.worker
        max_bytes = worker.settings.bounds.max_state_bytes
        self.restart_erased()
        for work in self.users.values():
            if work.changed:
                payload = work.stored(max_bytes, self.evicted)
                with tables.event_context(work.event):
                    worker.tables.user_state[tables.key(work.state.user_id)] = payload
            work.flushed()
        count_evictions("user_state", self.evicted)
        outputs = self.outbox.take()
        faults.crash_point("ingest_send", outputs)  # test-only: the states are stored, what they caused is not sent
        sender = BatchSender(worker.app)
        requests, rated = worker.topics.profile_requests.name, worker.topics.rated_events.name
        for user_id, output in outputs:
            key = tables.key(user_id)
            if isinstance(output, ProfileRequest):
                await sender.add(requests, key, output.to_bytes())
            else:
                await sender.add(rated, key, rated_trigger(user_id, output))
        await sender.submit()
        self.sending = (sender, [output for _, output in outputs if isinstance(output, ProfileRequest)])
        if wait:
            await self.wait_acked()

    async def wait_acked(self) -> None:
        """Wait until the broker has the outputs of the last flush."""
        if self.sending is None:
            return
        (sender, requests), self.sending = self.sending, None
        await sender.sent()
        for request in requests:
            metrics.PROFILE_REQUESTS.labels(reason=request.reason.value).inc()
            log.info(
                "profile request user_id=%s reason=%s drift=%.3f history=%s",
                request.user_id,
                request.reason.value,
                request.drift_score,
                request.history_ref,
                extra={"user_id": request.user_id},
            )

    async def settle(self) -> None:
        """After the batch raised: wait for what the last flush handed the producer (so no future's error goes
        unretrieved and its requests are counted), without hiding the batch's own error behind a failure here."""
        try:
            await self.wait_acked()
        except Exception:
            log.warning("ingest: the outputs of a batch that raised were not all acknowledged", exc_info=True)


async def apply_batch(worker: Worker, events: list) -> None:
    """Apply a batch of admitted interaction events in order (see the module's doc)."""
    batch = Batch(worker)
    keep_events, drift = worker.runtime.keep_events, worker.runtime.drift
    kinds: Counter[str] = Counter()
    try:
        for event in events:
            interaction = await decode_event(worker, event, worker.topics.interactions)
            if interaction is None:
                continue
            kinds[interaction.kind.value] += 1
            work = await batch.work(interaction.user_id, event)
            if work.must_flush_before(interaction, keep_events, drift):
                await batch.flush(wait=False)
            result = await step_guarded(batch, work, interaction, event)
            if result is not None:
                if result.drift_score:
                    metrics.DRIFT_SCORE.observe(result.drift_score)
                if not result.applied:
                    metrics.DUPLICATES.inc()
                batch.outbox.record(work, result, event.message.timestamp)
        await batch.flush()
    except Exception:
        await batch.settle()
        raise
    for kind, n in kinds.items():
        metrics.EVENTS.labels(topic="interactions", kind=kind).inc(n)


def step(
    runtime: Runtime, state: UserState, interaction: Interaction, evicted: Evictions, position: Position
) -> IngestStep:
    """Apply one event; the state stores ``position`` (its input partition and offset) with itself, so that the
    state and the record that the event was applied are one changelog record: a replay of it is a duplicate."""
    item = runtime.catalog.get(interaction.item_id)
    return ingest_event(
        state, interaction, item, runtime.labels, runtime.drift, runtime.ingest_limits, evicted, position
    )


async def step_guarded(
    batch: Batch, work: UserWork[faust.EventT], interaction: Interaction, event: faust.EventT
) -> IngestStep | None:
    """:func:`step`, tried ``poison_retries`` times, each on the user's state rebuilt from the table and the events
    applied since (a failed step may have changed the state half-way); then the event is dead-lettered."""
    worker = batch.worker
    tries = worker.settings.app.poison_retries
    error: Exception | None = None
    position = source_position(event, worker.settings.topics.prefix)
    arrived = event.message.timestamp
    for attempt in range(tries):
        try:
            result = step(worker.runtime, work.state, interaction, batch.evicted, position)
        except Exception as e:
            error = e
            log.warning(
                "ingest: event %s of user %s raised (try %d of %d): %s: %s",
                interaction.event_id,
                interaction.user_id,
                attempt + 1,
                tries,
                type(e).__name__,
                e,
            )
            work.state = after_erasure(await load_state(worker, interaction.user_id, event), work.state.erased_at)
            for done, at, _ in work.since_flush:  # what they caused is queued already: only the state is rebuilt
                step(worker.runtime, work.state, done, Evictions(), at)
            continue
        work.applied(interaction, position, arrived)
        return result
    await dead_poison(worker, event, "ingest", error)
    return None


def rated_trigger(user_id: str, event: HistoryEvent) -> bytes:
    """An applied rated event, with its position in the user's sequence, as task evaluation's input."""
    return EvalTrigger(
        user_id=user_id, event_id=event.event_id, seq=event.seq, item_id=event.item_id, rating=event.rating, ts=event.ts
    ).to_bytes()
