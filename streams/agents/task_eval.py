"""task evaluation: ``rated-events`` -> the frozen f_Rec tests the user's open candidates -> ``rewards``.

Its input (:class:`lettingo.stream_eval.EvalTrigger`, co-partitioned with the user-keyed topics) is written by
ingest, one message per newly applied rated event with its position in the user's sequence, and by the
scoreboard's agent, one per newly opened candidate. A candidate is tested only on rated events after the
history its prompt was built from (no leakage); a late candidate (its generator lagged behind the stream) is
tested at once on the later rated events the user's state still holds. Which pairs to test is
:func:`lettingo.stream_eval.cases_for`; a batch of cases is scored in one executor call.

Each reward carries its rated event's id in the ``event-id`` header: the scoreboard counts a reward once per
(candidate, event), so a pair evaluated twice (a replay after a restart, a catch-up racing a live event) is
rewarded once. This worker also remembers the pairs it sent, so it rarely sends one twice, and how many rewards
of each candidate were acknowledged: a candidate with ``pairs_min_rewards`` of them is not tested again, since its
round needs no more (on a lagging worker the scoreboard's own count trails far behind, and without this cap a full
replay scored each candidate about 50 times instead of 10).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING

from faust.types import EventT

from lettingo.records import RecordError
from lettingo.scoreboard import Scoreboard
from lettingo.stream_eval import EvalTrigger, StreamCase, cases_for
from lettingo.user_state import UserState
from streams import metrics, tables
from streams.edge import dead_letter
from streams.quarantine import crash_counted, guarded

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)
EVENT_ID_HEADER = "event-id"
SENT_MAX = 200_000


class SentPairs:
    """(candidate, event) pairs this worker evaluated, and each candidate's acknowledged rewards; the oldest
    forgotten first."""

    def __init__(self, max_size: int = SENT_MAX) -> None:
        self.max_size = max_size
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._acked: OrderedDict[str, int] = OrderedDict()

    def add(self, case: StreamCase) -> None:
        for candidate in case.candidates:
            self._pairs[(candidate.profile_id, case.event_id)] = None
        while len(self._pairs) > self.max_size:
            self._pairs.popitem(last=False)

    def acknowledged(self, case: StreamCase) -> None:
        """Count the case's rewards once the broker has them: a reward lost in a crash is not counted."""
        for candidate in case.candidates:
            self._acked[candidate.profile_id] = self._acked.pop(candidate.profile_id, 0) + 1
        while len(self._acked) > self.max_size:
            self._acked.popitem(last=False)

    def skips(self, profile_id: str, event_id: str, enough: int) -> bool:
        return (profile_id, event_id) in self._pairs or self._acked.get(profile_id, 0) >= enough


def _cases(worker: Worker, sent: SentPairs, trigger: EvalTrigger) -> list[StreamCase]:
    board = tables.read(worker.tables.scoreboard, trigger.user_id, Scoreboard)
    state = tables.read(worker.tables.user_state, trigger.user_id, UserState)
    enough = worker.settings.pairs.min_rewards
    cases = cases_for(
        trigger,
        state,
        board,
        skip=lambda profile_id, event_id: sent.skips(profile_id, event_id, enough),
        catch_up=enough,
    )
    for case in cases:
        sent.add(case)
    return cases


async def _event_cases(worker: Worker, sent: SentPairs, event) -> list[StreamCase]:
    m = event.message
    try:
        trigger = worker.topics.rated_events.decode(m.value, worker.runtime.input_limits)
    except RecordError as e:
        await dead_letter(worker, m.topic, m.partition, m.offset, m.key, m.value, e.reason, str(e))
        return []
    with tables.event_context(event):  # the tables read this event's partition, not the batch's last
        return _cases(worker, sent, trigger)


async def _score(worker: Worker, loop, cases: list[StreamCase], events_of: dict[int, EventT]) -> list:
    """Every case's rewards in one executor call; if that raises, case by case, so that one case that cannot be
    scored is dead-lettered (None) and the others are not."""
    runtime = worker.runtime
    evaluate = runtime.task_evaluator.evaluate
    try:
        return await loop.run_in_executor(runtime.eval_executor, evaluate, cases, runtime.catalog)
    except Exception as e:
        log.warning(
            "task evaluation of %d cases raised (%s: %s); scoring them one by one", len(cases), type(e).__name__, e
        )
    out = []
    for case in cases:

        async def one(case=case):
            return (await loop.run_in_executor(runtime.eval_executor, evaluate, [case], runtime.catalog))[0]

        out.append(await guarded(worker, events_of[id(case)], one, "task_eval", worker.settings.app.poison_retries))
    return out


def register(worker: Worker) -> None:
    """Declare the task evaluation agent on ``worker``'s app, with the pairs it has sent (this worker's memory)."""
    sent = SentPairs()

    @worker.app.agent(worker.topics.rated_events.topic)
    @crash_counted
    async def task_eval(stream):
        await evaluate_stream(worker, sent, stream)


async def evaluate_stream(worker: Worker, sent_pairs: SentPairs, stream) -> None:
    await worker.runtime.evaluator_ready.wait()
    loop = asyncio.get_running_loop()
    s = worker.settings
    async for events in stream.take_events(s.eval.batch_size, within=s.regen.batch_seconds):
        cases: list[StreamCase] = []
        events_of: dict[int, EventT] = {}  # id(case) -> its event, to dead-letter a case that cannot be scored
        for event in events:
            found = await guarded(
                worker,
                event,
                partial(_event_cases, worker, sent_pairs, event),
                "task_eval",
                s.app.poison_retries,
            )
            for case in found or []:
                cases.append(case)
                events_of[id(case)] = event
        if not cases:
            continue
        batches = await _score(worker, loop, cases, events_of)
        cases = [c for c, b in zip(cases, batches, strict=True) if b is not None]
        batches = [b for b in batches if b is not None]
        sent = []  # acknowledged together: one round trip per batch, not per reward
        for case, rewards in zip(cases, batches, strict=True):
            headers = {EVENT_ID_HEADER: case.event_id.encode()}
            for reward in rewards:
                key = tables.key(reward.user_id)
                sent.append(await worker.topics.rewards.send(key, reward.to_bytes(), headers))
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
        await asyncio.gather(*sent)
        for case in cases:
            sent_pairs.acknowledged(case)
