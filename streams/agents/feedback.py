"""feedback join: ``impressions`` x ``feedback`` by request id within a window -> click ``rewards``.

An impression without a click when its window closes is a negative reward. Closing windows needs a clock: a
timer finds users with closed windows in this worker's partitions and sends them a sweep message, so that the
table is only ever changed by this agent, inside stream iteration (Faust's RocksDB store requires that).
"""

from __future__ import annotations

import logging
import time

from lettingo.feedback_join import PendingJoin, add_feedback, add_impression, close_expired
from lettingo.records import Feedback, Impression
from streams import faust_topics, metrics, tables
from streams.agents import RUNTIME
from streams.app import app
from streams.edge import bare_topic, decode_event

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 1.0


@app.agent(faust_topics.join_inputs)
async def feedback_join(stream):
    window = RUNTIME.settings.feedback_window_seconds
    async for event in stream.events():
        topic = bare_topic(event.message.topic)
        now = time.time()
        if topic == "impressions":
            impression = await decode_event(event, Impression)
            if impression is None:
                continue
            metrics.EVENTS.labels(topic=topic, kind="impression").inc()
            user_id = impression.user_id
            join = tables.load(tables.pending_join, user_id, PendingJoin) or PendingJoin()
            rewards = add_impression(join, impression, window, now)
        elif topic == "feedback":
            feedback = await decode_event(event, Feedback)
            if feedback is None:
                continue
            metrics.EVENTS.labels(topic=topic, kind=feedback.kind).inc()
            user_id = feedback.user_id
            join = tables.load(tables.pending_join, user_id, PendingJoin) or PendingJoin()
            rewards = add_feedback(join, feedback, window, now)
        else:  # a sweep from the timer below
            user_id = (event.message.key or b"").decode(errors="replace")
            join = tables.load(tables.pending_join, user_id, PendingJoin)
            if join is None:
                continue
            rewards = close_expired(user_id, join, now)
        if join.empty:
            tables.pending_join.pop(tables.key(user_id), None)
        else:
            tables.store(tables.pending_join, user_id, join)
        for reward in rewards:
            await (await faust_topics.rewards.send(key=tables.key(user_id), value=reward.to_bytes()))
            metrics.REWARDS.labels(source=reward.source.value, correct=str(reward.correct).lower()).inc()
            log.info("click reward user_id=%s profile_id=%s request=%s clicked=%s",
                     user_id, reward.profile_id, reward.target, reward.correct)  # fmt: skip


@app.timer(SWEEP_EVERY_S)
async def sweep_closed_windows() -> None:
    now = time.time()
    for key, payload in list(tables.pending_join.items()):
        join = PendingJoin.from_bytes(payload)
        deadlines = [p.deadline for p in join.impressions.values()] + list(join.early_clicks.values())
        if deadlines and min(deadlines) <= now:
            await faust_topics.feedback_sweeps.send(key=key, value=b"")
