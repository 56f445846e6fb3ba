"""The batch rules of ingest (lettingo.ingest_batch), without Kafka: what an event queues, and when a user's next
event waits for a flush, driven by the real ingest step (lettingo.ingest.ingest_event)."""

from __future__ import annotations

from lettingo.bounds import Evictions, StateBounds
from lettingo.data import LabelScheme
from lettingo.drift import DriftConfig
from lettingo.ingest import IngestLimits, IngestStep, ingest_event
from lettingo.ingest_batch import Outbox, UserWork, begun_after
from lettingo.records import Interaction, Item, ProfileRequest
from lettingo.user_state import HistoryEvent, UserState

ITEM = Item(item_id="h", title="H", attributes=["Horror"])
KEEP = 3
LIMITS = IngestLimits(keep_events=KEEP, seen_max=1000, bounds=StateBounds())
COLD_AFTER_2 = DriftConfig(threshold=0.2, min_new_events=3, cooldown_seconds=0, cold_start_after=2)
NEVER = DriftConfig(cold_start_after=10**9)


def event(n: int, kind: str = "rating") -> Interaction:
    return Interaction(
        event_id=f"e{n}", user_id="u", item_id="h", kind=kind, rating=4.0 if kind == "rating" else None, ts=float(n)
    )


def apply(work: UserWork, outbox: Outbox, n: int, drift: DriftConfig = NEVER, kind: str = "rating") -> IngestStep:
    position = ("interactions:0", n)
    result = ingest_event(work.state, event(n, kind), ITEM, LabelScheme(), drift, LIMITS, Evictions(), position)
    work.applied(event(n, kind), position, arrived=1000.0 + n)
    outbox.record(work, result, arrived=1000.0 + n)
    return result


def test_new_rated_events_queue_without_a_barrier_until_the_window_is_full_of_unsent_ones():
    work, outbox = UserWork(UserState(user_id="u"), event=None), Outbox()
    for n in range(KEEP):
        assert not work.must_flush_before(event(n), KEEP, NEVER)
        apply(work, outbox, n)
    assert work.oldest_unsent_seq == 1 and not work.barrier
    # the next one would push the oldest unsent rated event out of the kept window: a replay could not re-send it
    assert work.must_flush_before(event(KEEP), KEEP, NEVER)
    assert [type(o) for _, o in outbox.take()] == [HistoryEvent] * KEEP and outbox.take() == []


def test_an_event_without_a_rating_queues_nothing():
    work, outbox = UserWork(UserState(user_id="u"), event=None), Outbox()
    apply(work, outbox, 0, kind="click")
    assert outbox.queued == [] and work.oldest_unsent_seq is None and work.changed


def test_events_of_any_kind_after_an_unsent_rated_event_flush_before_it_leaves_the_window():
    """Every event enters the kept window, so clicks after an unsent rating push it out as surely as ratings: the
    state stored then could not re-send it on a replay."""
    work, outbox = UserWork(UserState(user_id="u"), event=None), Outbox()
    apply(work, outbox, 0)
    for n in range(1, KEEP):
        assert not work.must_flush_before(event(n, "click"), KEEP, NEVER)
        apply(work, outbox, n, kind="click")
    assert [e.event_id for e in work.state.events] == [f"e{n}" for n in range(KEEP)]
    # the next click would evict e0, whose rated output is still unsent
    assert work.must_flush_before(event(KEEP, "click"), KEEP, NEVER)
    work.flushed()
    assert not work.must_flush_before(event(KEEP, "click"), KEEP, NEVER)


def test_an_erasure_learned_during_a_batch_restarts_the_user_from_the_events_after_it():
    """The state loaded before an erasure holds the user's old history: it is neither stored nor are the outputs of
    the events before the erasure sent; the events that reached Kafka after it are applied again on a fresh state."""
    work, outbox = UserWork(UserState(user_id="u"), event=None), Outbox()
    other = UserWork(UserState(user_id="v"), event=None)
    apply(work, outbox, 0)  # reached Kafka at 1000.0, before the erasure
    outbox.record(
        other,
        ingest_event(
            other.state,
            event(9).model_copy(update={"user_id": "v"}),
            ITEM,
            LabelScheme(),
            NEVER,
            LIMITS,
            Evictions(),
            None,
        ),
        None,
    )
    apply(work, outbox, 2)  # at 1002.0, after it
    assert not work.erased_since_load(None)
    erased_at = 1001.0
    assert work.erased_since_load(erased_at)
    again = work.restart_after_erasure(erased_at)
    assert [(i.event_id, p, a) for i, p, a in again] == [("e2", ("interactions:0", 2), 1002.0)]
    assert work.state == UserState(user_id="u", erased_at=erased_at) and not work.changed and work.since_flush == []
    assert not work.erased_since_load(erased_at)  # noted: a later flush does not restart it again
    outbox.drop("u")
    assert [(user, o.event_id) for user, o in outbox.queued] == [("v", "e9")]


def flush_as_the_batch_does(work: UserWork, erased_at: float | None) -> UserState:
    """What :meth:`streams.ingest_batch.Batch.flush` stores for ``work``, the user last erased at ``erased_at``."""
    if erased_at is not None and work.erased_since_load(erased_at):
        work.restart_after_erasure(erased_at)
    stored = UserState.from_bytes(work.stored(10**6, Evictions()))
    work.flushed()
    return stored


def test_a_state_loaded_after_the_erasure_was_heard_but_before_it_was_deleted_is_not_stored_again():
    """The erasure follower may hear of an erasure before the forget agent deletes the user's state. A batch that
    loads the state in between notes the new erasure time, so at its flush no erasure was learned since the load;
    yet the state holds the history the user asked to forget, and storing it (after the forget agent deleted it)
    would bring that history back. Only the events that reached Kafka after the erasure may be kept."""
    old, outbox = UserWork(UserState(user_id="u"), event=None), Outbox()
    for n in range(3):
        apply(old, outbox, n)  # reached Kafka at 1000.0 .. 1002.0
    table = flush_as_the_batch_does(old, None)
    outbox.take()
    erased_at = 1010.0

    work = UserWork.loaded(table, event=None, erased_at=erased_at)  # the forget agent has not deleted it yet
    apply(work, outbox, 20)  # reached Kafka at 1020.0: new data
    [(_, rated)] = outbox.take()
    assert isinstance(rated, HistoryEvent) and rated.seq == 1  # its output does not count the forgotten history
    table = flush_as_the_batch_does(work, erased_at)
    assert table.count == 1 and [e.event_id for e in table.events] == ["e20"]
    assert not any(table.has_applied(f"e{n}") for n in range(3))

    # The state begun after the erasure holds only new data: loaded again under the same erasure, it is kept.
    again = UserWork.loaded(table, event=None, erased_at=erased_at)
    apply(again, outbox, 21)
    assert [e.event_id for e in flush_as_the_batch_does(again, erased_at).events] == ["e20", "e21"]
    # A later erasure forgets it too.
    later = UserWork.loaded(UserState.from_bytes(table.to_bytes()), event=None, erased_at=2000.0)
    assert later.state.count == 0


def test_a_state_begun_after_an_erasure_this_worker_has_not_heard_of_yet_is_kept_but_marked_with_what_it_knows():
    """Another worker may have stored a state begun after an erasure this worker's follower has not read yet; the
    events this worker applies meanwhile may predate that erasure, so the state counts as begun before it: the
    forget agent deletes it, and a flush after the follower hears of it starts the user afresh."""
    ahead = UserState(user_id="u", count=2, erased_at=2000.0)
    work = UserWork.loaded(ahead, event=None, erased_at=1000.0)
    assert work.state.count == 2 and work.state.erased_at == 1000.0
    assert not begun_after(work.state, 2000.0) and work.erased_since_load(2000.0)
    assert begun_after(UserState(user_id="u", erased_at=2000.0), 2000.0)
    assert not begun_after(UserState(user_id="u"), 1.0)


def test_an_unsent_request_holds_the_next_event_back_only_while_it_could_request_again():
    work, outbox = UserWork(UserState(user_id="u"), event=None), Outbox()
    apply(work, outbox, 0, COLD_AFTER_2)
    assert not work.must_flush_before(event(1), KEEP, COLD_AFTER_2)
    apply(work, outbox, 1, COLD_AFTER_2)  # the second event cold-starts the user
    request = outbox.queued[-1][1]
    assert isinstance(request, ProfileRequest) and request.caused_at == 1001.0
    assert work.unsent_request and not work.barrier
    # the next events cannot request again before min_new_events (3) since the profile: no flush needed
    assert not work.must_flush_before(event(2), KEEP * 10, COLD_AFTER_2)
    apply(work, outbox, 2, COLD_AFTER_2)
    apply(work, outbox, 3, COLD_AFTER_2)
    # the third one could drift (cooldown 0), replacing the stored request before it is sent: flush first
    assert work.must_flush_before(event(4), KEEP * 10, COLD_AFTER_2)
    # within a cooldown it cannot
    cooldown = DriftConfig(threshold=0.2, min_new_events=3, cooldown_seconds=100.0, cold_start_after=2)
    assert not work.must_flush_before(event(4), KEEP * 10, cooldown)


def test_may_request_next_never_says_no_to_an_event_that_requests():
    import random

    from lettingo.drift import may_request_next

    rnd = random.Random(3)
    items = [Item(item_id=f"i{g}", title="T", attributes=[f"g{g}"]) for g in range(4)]
    for config in (COLD_AFTER_2, DriftConfig(threshold=0.05, min_new_events=2, cooldown_seconds=5, cold_start_after=3)):
        state, ts, requests = UserState(user_id="u"), 0.0, 0
        for n in range(3000):
            ts = max(0.0, ts + rnd.choice((-3.0, 0.0, 1.0, 4.0)))  # out of order too: event time may go back
            item = rnd.choice(items)
            interaction = Interaction(
                event_id=f"e{n}", user_id="u", item_id=item.item_id, kind="rating", rating=rnd.choice((1.0, 5.0)), ts=ts
            )
            possible = may_request_next(state, ts, config)
            result = ingest_event(state, interaction, item, LabelScheme(), config, LIMITS, Evictions(), None)
            if result.request is not None:
                requests += 1
                assert possible
        assert requests > 3  # the property was exercised


def test_a_replayed_event_re_sends_as_a_barrier_and_needs_no_flush_itself():
    work, outbox = UserWork(UserState(user_id="u"), event=None), Outbox()
    apply(work, outbox, 0, COLD_AFTER_2)
    apply(work, outbox, 1, COLD_AFTER_2)
    outbox.take()
    work.flushed()
    assert not (work.changed or work.barrier or work.oldest_unsent_seq or work.unsent_request or work.since_flush)
    assert not work.must_flush_before(event(1), KEEP, COLD_AFTER_2)
    replayed = apply(work, outbox, 1, COLD_AFTER_2)
    assert not replayed.applied
    rated, request = (o for _, o in outbox.queued)
    assert isinstance(rated, HistoryEvent) and rated.event_id == "e1"
    # the stored request, re-sent: not a new latency sample, so it carries no arrival time
    assert isinstance(request, ProfileRequest) and request.history_ref.event_id == "e1" and request.caused_at is None
    assert work.barrier and work.oldest_unsent_seq is None and not work.unsent_request
    # a further duplicate changes nothing, so it needs no flush; a new event does
    assert not work.must_flush_before(event(1), KEEP, NEVER)
    assert work.must_flush_before(event(2), KEEP, NEVER)


def test_outputs_keep_event_order_across_users():
    outbox = Outbox()
    a, b = UserWork(UserState(user_id="a"), event=None), UserWork(UserState(user_id="b"), event=None)
    for n, work in enumerate((a, b, a)):
        position = ("interactions:0", n)
        interaction = event(n).model_copy(update={"user_id": work.state.user_id})
        result = ingest_event(work.state, interaction, ITEM, LabelScheme(), NEVER, LIMITS, Evictions(), position)
        outbox.record(work, result, arrived=None)
    assert [(user, o.event_id) for user, o in outbox.take()] == [("a", "e0"), ("b", "e1"), ("a", "e2")]
