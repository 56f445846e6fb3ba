"""task evaluation: ``rated-events`` -> the frozen f_Rec tests the user's open candidates -> ``rewards``.

Its input (:class:`lettingo.stream_eval.EvalTrigger`, co-partitioned with the user-keyed topics) is written by
ingest, one message per newly applied rated event with its position in the user's sequence, and by the
scoreboard's agent, one per newly opened candidate. A candidate is tested only on rated events after the history
its prompt was built from (no leakage); a late candidate (its generator lagged behind the stream) is tested at once
on the later rated events the user's state still holds. Which pairs to test is
:meth:`lettingo.sent_pairs.SentPairs.cases`; a batch of cases is scored in one executor call. The rated events
arrive as ingest's interactions do: each fetch's records of a partition as one chunk
(:class:`streams.faust_adapter.BulkSink`), or with ``app.bulk_ingest`` off through Faust's ``take_events``.

Each reward carries its rated event's id in the ``event-id`` header: the scoreboard counts a reward once per
(candidate, event), so a pair evaluated twice (a replay after a restart, a catch-up racing a live event) is
rewarded once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from faust.types import EventT

from lettingo.records import RecordError, Reward
from lettingo.scoreboard import Scoreboard
from lettingo.sent_pairs import SentPairs
from lettingo.stream_eval import StreamCase
from lettingo.user_state import UserState
from streams import eval_jobs, metrics, tables
from streams.edge import dead_letter
from streams.eval_jobs import EVENT_ID_HEADER
from streams.faust_adapter import bulk_sink, consume_batches
from streams.quarantine import crash_counted, guarded

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    """Declare the task evaluation agent on ``worker``'s app, with the pairs it has sent (this worker's memory)."""
    app, sent, s = worker.app, worker.runtime.sent_pairs, worker.settings
    topic = worker.topics.rated_events
    # Ingest writes one rated event per rated interaction: through Faust's per-event stream they cost as much CPU
    # as the interaction's own ingest (bench ingest), so they take the bulk path as interactions do.
    sink = bulk_sink(app, topic.name, s.app.bulk_ingest)

    async def evaluate(events: Sequence[EventT]) -> None:
        for at in range(0, len(events), s.eval.batch_size):  # a bulk batch may hold more events than one call scores
            await evaluate_batch(worker, sent, events[at : at + s.eval.batch_size])

    @app.agent(topic.topic)  # subscribes the topic on either path
    @crash_counted
    async def task_eval(stream):
        await consume_batches(app, stream, sink, s.eval.batch_size, s.regen.batch_seconds, evaluate)


async def evaluate_batch(worker: Worker, sent_pairs: SentPairs, events: Sequence[EventT]) -> None:
    """Test the open candidates each rated event of ``events`` is a case for, in one scoring call, and send the
    rewards. The frozen reader is waited for only when there is a case: a batch without one (no open candidate,
    the common case) goes by while the reader loads. A batch with one waits for it (seconds at start-up; minutes
    while a reader is built cold, without ``LETTINGO_READER_PATH``), and once the bulk sink is full so does the fetch
    loop, ingest's too: Faust's path paused only this topic. The worker is not ready meanwhile either (/ready)."""
    cases: list[StreamCase] = []
    events_of: dict[int, EventT] = {}  # id(case) -> its event, to dead-letter a case that cannot be scored
    retries = worker.settings.app.poison_retries
    for event in events:
        step = partial(_event_cases, worker, sent_pairs, event)
        for case in await guarded(worker, event, step, "task_eval", retries) or []:
            cases.append(case)
            events_of[id(case)] = event
    if not cases:
        return
    await worker.runtime.evaluator_ready.wait()
    results = await eval_jobs.score(worker, cases, events_of)  # None: a case that could not be scored
    scored = [(case, rewards) for case, rewards in zip(cases, results, strict=True) if rewards is not None]
    sent: list[asyncio.Future] = []
    for case, rewards in scored:
        sent.extend(await _send(worker, case, rewards))
    await asyncio.gather(*sent)  # acknowledged together: one round trip per batch, not per reward
    for case, _ in scored:
        sent_pairs.acknowledged(case)


async def _event_cases(worker: Worker, sent: SentPairs, event: EventT) -> list[StreamCase]:
    m = event.message
    try:
        trigger = worker.topics.rated_events.decode(m.value, worker.runtime.input_limits)
    except RecordError as e:
        await dead_letter(worker, m.topic, m.partition, m.offset, m.key, m.value, e.reason, str(e))
        return []
    with tables.event_context(event):  # the tables read this event's partition, not the batch's last
        board = tables.read(worker.tables.scoreboard, trigger.user_id, Scoreboard)
        state = partial(tables.read, worker.tables.user_state, trigger.user_id, UserState)
        return sent.cases(trigger, state, board, worker.settings.pairs.min_rewards)


async def _send(worker: Worker, case: StreamCase, rewards: list[Reward]) -> list[asyncio.Future]:
    """Send the case's rewards, its rated event in their header; each future resolves once the broker has it."""
    headers = {EVENT_ID_HEADER: case.event_id.encode()}
    sent = []
    for reward in rewards:
        sent.append(await worker.topics.rewards.send(tables.key(reward.user_id), reward.to_bytes(), headers))
        metrics.REWARDS.labels(source=reward.source.value, correct=str(reward.correct).lower()).inc()
    log.info(
        "task evaluation user_id=%s event=%s target=%s candidates=%d mean_reward=%.3f",
        case.user_id,
        case.event_id,
        case.target.item_id,
        len(rewards),
        sum(r.value for r in rewards) / max(len(rewards), 1),
        extra={"user_id": case.user_id},
    )
    return sent
