"""The rules of ingesting a batch of interactions, without any I/O: what an applied event queues to send, and when
a user's next event must wait until what is queued is stored and sent (a flush).

A batch holds each of its users' states while it applies their events (:class:`UserWork`), and the outputs the
events caused in event order (:class:`Outbox`). A flush stores every changed state and then sends the outputs,
and no later flush stores a state before the broker has acknowledged them; ``streams.ingest_batch`` does it.

A replayed event (a crash after a state was stored but before what it caused was sent) re-sends its rated event
while the kept window still holds it, and the stored ``last_request`` if that event caused it
(:func:`lettingo.ingest.ingest_event`). So no state may be stored with an unsent output that this could not
re-send: before a user's next new event the batch is flushed if that user has

- an unsent rated event that the next event would push out of the window (every event enters it, of any kind,
  so it counts the events applied since that rated one, not the rated events),
- an unsent profile request and the next event may cause another one (which would replace ``last_request``;
  :func:`lettingo.drift.may_request_next` says when it cannot: too little evidence since, or within the cooldown),
- or a re-sent output (a barrier: the next new event may replace what it was re-sent from).

A flush cuts each state to the byte bound before it stores it (:meth:`UserWork.stored`); that cut too keeps every
event whose rated output is not sent yet, in the window, and drops their attributes instead (nothing reads an
event's attributes back), so that a replay can re-send them.

Erasure. The worker hears of a user's erasure (``Runtime.erased``, its time) from its erasure follower, and the
forget agent deletes the user's state; the two are separate consumers, so a batch may load the old state between
the two. Its flush, after the forget agent ran, would store the forgotten history again, and nothing would ever
delete it. So each state records the latest erasure known when it was begun (``UserState.erased_at``: every event
it holds reached Kafka after it), and a state loaded under a later erasure is not worked on: the batch begins a
fresh one (:func:`after_erasure`). The mark is in the same stored value as the state, so the rule holds for what
a crashed worker left in its table and for a replay, which the follower's erasures (read in full before the first
event) let through only where the event reached Kafka after the erasure. It needs no record of what the forget
agent has done, which a restarted worker would have to restore; and the forget agent can keep a state begun after
the erasure it acts on (new data, :func:`begun_after`). A state may be begun after an erasure this worker has not
heard of yet (another worker stored it): it is kept, but its mark becomes this worker's, so that the events this
worker applies before it hears of that erasure are forgotten once it does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from lettingo.bounds import Evictions
from lettingo.drift import DriftConfig, may_request_next
from lettingo.ingest import IngestStep
from lettingo.records import Interaction, ProfileRequest
from lettingo.user_state import HistoryEvent, UserState, fit_user_state

E = TypeVar("E")  # the transport's handle of an event (where its state write is filed)
Output = HistoryEvent | ProfileRequest  # a rated event for task evaluation, or a profile request
Position = tuple[str, int]  # (source, offset): where an event sits in its input
Applied = tuple[Interaction, Position, float | None]  # an applied event, where it sits, when it reached the broker


@dataclass
class UserWork(Generic[E]):
    """One user's state while a batch applies their events, and what of it is not stored or sent yet."""

    state: UserState
    event: E  # the user's latest event
    changed: bool = False
    oldest_unsent_seq: int | None = None  # the seq of the oldest newly applied rated event not sent yet
    unsent_request: bool = False  # a new profile request not sent yet
    barrier: bool = False  # a re-sent output not sent yet: the user's next new event waits for a flush
    # Applied since the state was loaded or stored, with their positions and arrival times: what a retry replays on
    # the stored state, and what an erasure learned meanwhile applies again on a fresh one.
    since_flush: list[Applied] = field(default_factory=list)

    @classmethod
    def loaded(cls, state: UserState, event: E, erased_at: float | None) -> UserWork[E]:
        """The work on ``state`` as the table held it, the user last erased at ``erased_at`` (read before the load, with
        no await between it and the check of the event that caused the load: :func:`streams.edge.decode_event`)."""
        return cls(after_erasure(state, erased_at), event)

    def must_flush_before(self, interaction: Interaction, keep_events: int, drift: DriftConfig) -> bool:
        """Whether the batch must be flushed before ``interaction`` is applied (see the module's doc)."""
        if not (
            self.barrier
            # The window keeps the events of seq count+1-keep_events .. count+1 once the next one is applied.
            or (self.oldest_unsent_seq is not None and self.state.count + 1 - self.oldest_unsent_seq >= keep_events)
            or (self.unsent_request and may_request_next(self.state, interaction.ts, drift))
        ):
            return False
        return not self.state.has_applied(interaction.event_id)  # a duplicate changes nothing: no need

    def applied(self, interaction: Interaction, position: Position, arrived: float | None) -> None:
        """``interaction`` (which reached the broker at ``arrived``) went through the state (a duplicate too: the
        state is stored anyway, so that the changelog catches up with a local store that is ahead of it)."""
        self.since_flush.append((interaction, position, arrived))
        self.changed = True

    def stored(self, max_bytes: int, evicted: Evictions) -> bytes:
        """The state as a flush stores it: serialized under ``max_bytes`` (:func:`fit_user_state`), keeping the
        events from the oldest whose rated output is not sent yet (see the module's doc)."""
        return fit_user_state(self.state, max_bytes, evicted, unsent_from=self.oldest_unsent_seq)

    def flushed(self) -> None:
        """The state is stored and every output queued for it handed to the producer. They may not be acknowledged
        yet; that is safe because no state is stored again before the broker has acknowledged them (the delivery's
        next flush waits for that first)."""
        self.changed, self.oldest_unsent_seq, self.unsent_request, self.barrier = False, None, False, False
        self.since_flush.clear()

    def erased_since_load(self, erased_at: float | None) -> bool:
        """Whether the user was erased (last at ``erased_at``) after the state was loaded: it then holds history the
        user asked to forget, and must not be stored, nor the outputs of the events before the erasure sent. The
        state carries the erasure known at its load (:func:`after_erasure`)."""
        return erased_at is not None and erased_at != self.state.erased_at

    def restart_after_erasure(self, erased_at: float) -> list[Applied]:
        """Start the user afresh after an erasure at ``erased_at`` learned since the load; what is not stored yet is
        dropped (the caller drops the queued outputs: :meth:`Outbox.drop`). Returns the events applied since the last
        flush that reached the broker after the erasure (new data), in order, to apply again on the fresh state; an
        event without an arrival time counts as old, as :meth:`streams.runtime.Runtime.forgotten` counts it."""
        again: list[Applied] = [(i, p, a) for i, p, a in self.since_flush if a is not None and a > erased_at]
        self.state = UserState(user_id=self.state.user_id, erased_at=erased_at)
        self.flushed()
        return again


def after_erasure(state: UserState, erased_at: float | None) -> UserState:
    """``state`` as a batch may apply events to it, the user last erased at ``erased_at`` as far as this worker
    knows: a fresh state if it was begun before that erasure (see the module's doc). Its ``erased_at`` becomes this
    worker's: one begun after an erasure this worker has not heard of yet is kept, but counts as begun before it
    once it hears of it (the events this worker applies meanwhile may predate it)."""
    if erased_at is not None and (state.erased_at is None or state.erased_at < erased_at):
        return UserState(user_id=state.user_id, erased_at=erased_at)
    if state.erased_at != erased_at:
        state.erased_at = erased_at
    return state


def begun_after(state: UserState, erased_at: float) -> bool:
    """Whether ``state`` holds only events that reached Kafka after the erasure at ``erased_at``."""
    return state.erased_at is not None and state.erased_at >= erased_at


@dataclass
class Outbox:
    """The outputs a batch's events caused, in event order, each with its user."""

    queued: list[tuple[str, Output]] = field(default_factory=list)

    def record(self, work: UserWork, result: IngestStep, arrived: float | None) -> None:
        """Queue what an event caused: a new rated event or request, or a re-sent output (a barrier). A new request
        carries when its event reached the broker (``arrived``), the origin of the profile latency."""
        if result.rated is not None:
            self._queue(work, result.rated, barrier=not result.applied)
        if result.request is not None:
            request = result.request
            if result.applied and arrived:
                request = request.model_copy(update={"caused_at": arrived})
            self._queue(work, request, barrier=not result.applied)

    def _queue(self, work: UserWork, output: Output, *, barrier: bool) -> None:
        self.queued.append((work.state.user_id, output))
        if barrier:
            work.barrier = True
        elif isinstance(output, HistoryEvent):
            if work.oldest_unsent_seq is None:
                work.oldest_unsent_seq = output.seq
        else:
            work.unsent_request = True

    def drop(self, user_id: str) -> None:
        """Forget every output queued for ``user_id`` (erased while the batch ran)."""
        self.queued = [(user, output) for user, output in self.queued if user != user_id]

    def take(self) -> list[tuple[str, Output]]:
        """Everything queued, in event order; the outbox is empty after."""
        queued, self.queued = self.queued, []
        return queued
