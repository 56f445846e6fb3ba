"""task evaluation: each new rated interaction tests the user's open candidates with the frozen f_Rec -> ``rewards``.

Reads ``interactions`` beside ingest (Faust hands each event to both agents); invalid events are ingest's to
dead-letter, so here they are only passed over. A batch of events is scored in one executor call
(:class:`lettingo.stream_eval.StreamTaskEvaluator`: the offline ranking evaluation, one case per new rating).
"""

from __future__ import annotations

import asyncio
import logging

from lettingo.data import Rating
from lettingo.records import Interaction, RecordError, decode_record
from lettingo.scoreboard import Scoreboard
from lettingo.stream_eval import OpenCandidate, StreamCase
from lettingo.user_state import UserState
from streams import faust_topics, metrics, tables
from streams.agents import RUNTIME
from streams.app import app

log = logging.getLogger(__name__)


def _case(interaction: Interaction) -> StreamCase | None:
    if interaction.rating is None:
        return None
    board = tables.load(tables.scoreboard, interaction.user_id, Scoreboard)
    candidates = tuple(OpenCandidate(c.profile_id, c.text) for c in board.open_candidates()) if board else ()
    if not candidates:
        return None
    state = tables.load(tables.user_state, interaction.user_id, UserState)
    before = state.events_before(interaction.event_id) if state else []
    history = tuple(Rating(interaction.user_id, e.item_id, e.rating, int(e.ts)) for e in before if e.rating is not None)
    target = Rating(interaction.user_id, interaction.item_id, interaction.rating, int(interaction.ts))
    return StreamCase(interaction.user_id, candidates, history, target, interaction.ts)


@app.agent(faust_topics.interactions)
async def task_eval(stream):
    await RUNTIME.evaluator_ready.wait()
    loop = asyncio.get_running_loop()
    s = RUNTIME.settings
    async for events in stream.take_events(s.eval_batch_size, within=s.regen_batch_seconds):
        cases = []
        for event in events:
            try:
                interaction = decode_record(Interaction, event.message.value, s.max_message_bytes)
            except RecordError:
                continue
            case = _case(interaction)
            if case is not None:
                cases.append(case)
        if not cases:
            continue
        batches = await loop.run_in_executor(RUNTIME.eval_executor, RUNTIME.evaluator.evaluate, cases, RUNTIME.catalog)
        for case, rewards in zip(cases, batches, strict=True):
            for reward in rewards:
                await (await faust_topics.rewards.send(key=tables.key(reward.user_id), value=reward.to_bytes()))
                metrics.REWARDS.labels(source=reward.source.value, correct=str(reward.correct).lower()).inc()
            log.info("task evaluation user_id=%s target=%s candidates=%d mean_reward=%.3f",
                     case.user_id, case.target.item_id, len(rewards),
                     sum(r.value for r in rewards) / max(len(rewards), 1))  # fmt: skip
