"""task evaluation: each new rated interaction tests the user's open candidates with f_Rec -> ``rewards``.

Reads ``interactions`` beside ingest (Faust hands each event to both agents); invalid events are ingest's to
dead-letter, so here they are only passed over.
"""

from __future__ import annotations

import asyncio
import logging

from lettingo.data import Rating
from lettingo.records import Interaction, RecordError, decode_record
from lettingo.scoreboard import Scoreboard, evaluate_candidates
from lettingo.user_state import UserState
from streams import faust_topics, metrics, tables
from streams.agents import RUNTIME
from streams.app import app

log = logging.getLogger(__name__)


@app.agent(faust_topics.interactions)
async def task_eval(stream):
    loop = asyncio.get_running_loop()
    async for event in stream.events():
        try:
            interaction = decode_record(Interaction, event.message.value, RUNTIME.settings.max_message_bytes)
        except RecordError:
            continue
        if interaction.rating is None:
            continue
        board = tables.load(tables.scoreboard, interaction.user_id, Scoreboard)
        candidates = board.open_candidates() if board else []
        if not candidates:
            continue
        state = tables.load(tables.user_state, interaction.user_id, UserState)
        recent = (
            state.recent(RUNTIME.settings.worker_history_window, before_event=interaction.event_id) if state else []
        )
        recent_ratings = [
            Rating(interaction.user_id, e.item_id, e.rating, int(e.ts)) for e in recent if e.rating is not None
        ]
        rewards = await loop.run_in_executor(
            RUNTIME.executor, evaluate_candidates, interaction.user_id, candidates, recent_ratings,
            interaction.item_id, interaction.rating, RUNTIME.reader, RUNTIME.labels, interaction.ts,
        )  # fmt: skip
        for reward in rewards:
            await (await faust_topics.rewards.send(key=tables.key(reward.user_id), value=reward.to_bytes()))
            metrics.REWARDS.labels(source=reward.source.value, correct=str(reward.correct).lower()).inc()
        log.info("task evaluation user_id=%s target=%s candidates=%d correct=%d",
                 interaction.user_id, interaction.item_id, len(rewards), sum(r.correct for r in rewards))  # fmt: skip
