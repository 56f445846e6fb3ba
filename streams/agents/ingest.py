"""ingest: batches of ``interactions`` -> the user_state table; drift or cold start -> ``profile-requests``; each
newly applied rated event -> ``rated-events`` (task evaluation's input).

Ingest is the only consumer of ``interactions``: Faust commits one offset per topic-partition for the whole
app, so a second agent on the topic could commit past events this one never applied.

A batch loads each of its users' states once, applies that user's events in order (the drift
decision after each one, exactly as one by one) and stores each changed state once, under the partition of one
of that user's events. Only then does it send what the events caused, in event order, and it waits for the
broker to take all of it before the batch is recorded as applied (:mod:`streams.applied`). A state is stored
before what it caused is sent, because regenerate and task evaluation read the state a request or a rated event
refers to.

A crash after a state is stored but before its outputs are sent is repaired by the duplicate path when the
events are replayed: a replayed event re-sends its rated event while the kept window still holds it, and the
stored ``last_request`` if that event caused it. So no state is stored with an unsent output that this path
could not re-send: before a user's next new event, the batch is flushed (states stored, outputs sent and
acknowledged) if that user has an unsent profile request or re-sent output, or as many unsent rated events as
the window keeps.

An event whose processing raises is tried again on the user's state rebuilt from the table and the user's events
applied since the last flush; after ``poison_retries`` tries it is dead-lettered and skipped (streams.quarantine).
A stored state that does not decode is quarantined and the user starts afresh. Each stored state is cut to
``max_state_bytes`` (the oldest history dropped first), so no table write can exceed what the producer sends.

A batch is the fetched chunks of ``interactions`` waiting in a :class:`streams.faust_adapter.BulkSink`
(acked together once applied) or, with ``app.bulk_ingest`` off, what Faust's ``take_events`` takes.

The outputs go out as one record batch per topic partition (:class:`streams.faust_adapter.BatchSender`), not one
``Topic.send`` each.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import faust

from lettingo.bounds import Evictions
from lettingo.ingest import IngestStep, ingest_event
from lettingo.records import Interaction, ProfileRequest
from lettingo.stream_eval import EvalTrigger
from lettingo.user_state import HistoryEvent, UserState, fit_user_state
from streams import faults, metrics, tables
from streams.applied import AppliedOffsets, source_position
from streams.edge import decode_event
from streams.faust_adapter import BatchSender, BulkSink, ack_chunks, flush, install_bulk
from streams.kafka.offsets import first_offset_from
from streams.quarantine import count_evictions, crash_counted, dead_poison, quarantine_value

if TYPE_CHECKING:
    from streams.app import Worker
    from streams.runtime import Runtime

log = logging.getLogger(__name__)
WATCH_EVERY_S = 3.0
BATCH_MAX = 1000  # interactions taken at once at most
# The longest wait to fill a batch: the latency a trickle of events pays. With a backlog the wait is Faust handing
# the buffer its events one by one (it does not read ahead while a batch is applied), so a longer wait makes larger
# batches: fewer state reads and writes, fewer waits for the broker.
BATCH_WITHIN_S = 0.2


def register(worker: Worker) -> None:
    """Declare the ingest agent and the watchdog of its applied offsets on ``worker``'s app."""
    app, runtime = worker.app, worker.runtime
    applied = runtime.guard(
        AppliedOffsets(app, worker.tables.applied_offsets, partial(first_offset_from, worker.settings))
    )
    topic = worker.topics.interactions
    sink = BulkSink() if worker.settings.app.bulk_ingest else None
    if sink is not None:  # the consumer hands the topic's fetched records to the sink, not to the stream
        install_bulk(app, {topic.name: sink})

    async def apply_events(events: list) -> None:
        with applied.working():
            # Applied before, or Faust skipped events before it: see streams.applied.
            admitted = [event for event in events if await applied.admit(event)]
            await apply_batch(worker, admitted)
            faults.crash_point("ingest", admitted)  # test-only: off unless STREAMS_TEST_CRASH_AT names ingest
            # The batch's state writes are on the broker before the offset that says they are applied: the
            # applied offset never runs ahead of the stored states (each holds its own position, see step()).
            await flush(app)
            applied.applied_batch(admitted)  # after every effect of the batch, so a crash before it replays it

    @app.agent(topic.topic)  # subscribes the topic (assignment, tables' co-partitioning) on either path
    @crash_counted
    async def ingest(stream):
        with applied.working():  # read-ahead while the catalogue loads is not a gap
            await runtime.catalog_ready.wait()  # attributes come from the catalogue: read it before the first event
        if sink is None:
            async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
                await apply_events(events)
            return
        async for chunks in sink.batches(BATCH_MAX):
            try:
                await apply_events([event for chunk in chunks for event in chunk.events])
            finally:  # acked even when it raised: the applied-offsets guard seeks back to what was not applied
                ack_chunks(app.consumer, chunks)

    @app.timer(WATCH_EVERY_S)
    async def watch_applied() -> None:
        try:
            await applied.watch(topic.name)
            await applied.sample_lag(topic.name, worker.settings.app.stall_seconds)
        except Exception:  # a timer that raises stops the worker; a rebalance under way is retried in a few seconds
            log.warning(
                "watching the applied offsets of %s failed; trying again at the next tick", topic.name, exc_info=True
            )


@dataclass
class UserWork:
    """One user's state while a batch applies its events, and what is not stored or sent yet."""

    state: UserState
    event: faust.EventT  # the user's latest event: its partition files the state's write
    changed: bool = False
    unsent_rated: int = 0  # newly applied rated events not sent yet
    barrier: bool = False  # an unsent request or re-sent output: the user's next new event waits for a flush
    # Applied since the state was loaded or stored, with their positions.
    since_flush: list[tuple[Interaction, tuple[str, int]]] = field(default_factory=list)


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
    users: dict[str, UserWork] = field(default_factory=dict)
    outputs: list[HistoryEvent | ProfileRequest] = field(default_factory=list)  # in event order
    output_users: list[str] = field(default_factory=list)
    evicted: Evictions = field(default_factory=Evictions)

    async def work(self, user_id: str, event: faust.EventT) -> UserWork:
        work = self.users.get(user_id)
        if work is None:
            work = self.users[user_id] = UserWork(await load_state(self.worker, user_id, event), event)
        work.event = event
        return work

    def must_flush_before(self, work: UserWork, interaction: Interaction) -> bool:
        if not (work.barrier or work.unsent_rated >= self.worker.runtime.keep_events):
            return False
        return not work.state.has_applied(interaction.event_id)  # a duplicate changes nothing: no need

    def send(self, work: UserWork, output: HistoryEvent | ProfileRequest, *, barrier: bool) -> None:
        self.outputs.append(output)
        self.output_users.append(work.state.user_id)
        if barrier:
            work.barrier = True
        elif isinstance(output, HistoryEvent):
            work.unsent_rated += 1

    async def flush(self) -> None:
        """Store every changed state, then send the outputs and wait until the broker has them all."""
        worker = self.worker
        max_bytes = worker.settings.bounds.max_state_bytes
        # Users forgotten while this batch ran (streams.agents.erasures): nothing of theirs is stored or sent.
        forgotten = {u for u, w in self.users.items() if worker.runtime.forgotten(u, w.event.message.timestamp)}
        for work in self.users.values():
            if work.changed and work.state.user_id not in forgotten:
                payload = fit_user_state(work.state, max_bytes, self.evicted)
                with tables.event_context(work.event):
                    worker.tables.user_state[tables.key(work.state.user_id)] = payload
            work.changed, work.unsent_rated, work.barrier = False, 0, False
            work.since_flush.clear()
        count_evictions("user_state", self.evicted)
        sender = BatchSender(worker.app)
        requests, rated = worker.topics.profile_requests.name, worker.topics.rated_events.name
        for user_id, output in zip(self.output_users, self.outputs, strict=True):
            if user_id in forgotten:
                continue
            key = tables.key(user_id)
            if isinstance(output, ProfileRequest):
                await sender.add(requests, key, output.to_bytes())
            else:
                await sender.add(rated, key, rated_trigger(user_id, output))
        await sender.sent()
        for output in self.outputs:
            if isinstance(output, ProfileRequest) and output.user_id not in forgotten:
                metrics.PROFILE_REQUESTS.labels(reason=output.reason.value).inc()
                log.info(
                    "profile request user_id=%s reason=%s drift=%.3f history=%s",
                    output.user_id,
                    output.reason.value,
                    output.drift_score,
                    output.history_ref,
                    extra={"user_id": output.user_id},
                )
        self.outputs.clear()
        self.output_users.clear()


async def apply_batch(worker: Worker, events: list) -> None:
    """Apply a batch of admitted interaction events in order (see the module's doc)."""
    batch = Batch(worker)
    kinds: Counter[str] = Counter()
    for event in events:
        interaction = await decode_event(worker, event, worker.topics.interactions)
        if interaction is None:
            continue
        kinds[interaction.kind.value] += 1
        work = await batch.work(interaction.user_id, event)
        if batch.must_flush_before(work, interaction):
            await batch.flush()
        step = await step_guarded(batch, work, interaction, event)
        if step is not None:
            record(batch, work, step, event.message.timestamp)
    await batch.flush()
    for kind, n in kinds.items():
        metrics.EVENTS.labels(topic="interactions", kind=kind).inc(n)


def step(
    runtime: Runtime, state: UserState, interaction: Interaction, evicted: Evictions, position: tuple[str, int]
) -> IngestStep:
    """Apply one event; the state stores ``position`` (its input partition and offset) with itself, so that the
    state and the record that the event was applied are one changelog record: a replay of it is a duplicate."""
    item = runtime.catalog.get(interaction.item_id)
    return ingest_event(
        state, interaction, item, runtime.labels, runtime.drift, runtime.ingest_limits, evicted, position
    )


async def step_guarded(
    batch: Batch, work: UserWork, interaction: Interaction, event: faust.EventT
) -> IngestStep | None:
    """:func:`step`, tried ``poison_retries`` times, each on the user's state rebuilt from the table and the events
    applied since (a failed step may have changed the state half-way); then the event is dead-lettered."""
    worker = batch.worker
    tries = worker.settings.app.poison_retries
    error: Exception | None = None
    position = source_position(event, worker.settings.topics.prefix)
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
            work.state = await load_state(worker, interaction.user_id, event)
            for done, at in work.since_flush:  # what they caused is queued already: only the state is rebuilt
                step(worker.runtime, work.state, done, Evictions(), at)
            continue
        work.since_flush.append((interaction, position))
        work.changed = True  # stored even for a duplicate, so the changelog catches up with the local store
        return result
    await dead_poison(worker, event, "ingest", error)
    return None


def record(batch: Batch, work: UserWork, result: IngestStep, arrived: float | None) -> None:
    """Queue what an event caused: a new rated event (no barrier), a request or any re-sent output (barrier). A new
    request carries when its event reached Kafka (``arrived``), the origin of the profile latency metric."""
    if result.drift_score:
        metrics.DRIFT_SCORE.observe(result.drift_score)
    if not result.applied:
        metrics.DUPLICATES.inc()
    if result.rated is not None:
        batch.send(work, result.rated, barrier=not result.applied)
    if result.request is not None:
        request = result.request
        if result.applied and arrived:
            request = request.model_copy(update={"caused_at": arrived})
        batch.send(work, request, barrier=True)


def rated_trigger(user_id: str, event: HistoryEvent) -> bytes:
    """An applied rated event, with its position in the user's sequence, as task evaluation's input."""
    return EvalTrigger(
        user_id=user_id, event_id=event.event_id, seq=event.seq, item_id=event.item_id, rating=event.rating, ts=event.ts
    ).to_bytes()
