"""feedback join: ``impressions`` x ``feedback`` by request id within a window -> click ``rewards``.

An impression without a click when its window closes is a negative reward. Closing windows needs a clock: a
timer finds users with closed windows in this worker's partitions and sends them a sweep message, so that the
table is only ever changed by this agent, inside stream iteration (Faust's RocksDB store requires that).
"""

from __future__ import annotations

import logging
import time

from lettingo.bounds import Evictions, check_size
from lettingo.feedback_join import PendingJoin, add_feedback, add_impression, close_expired
from lettingo.records import Feedback, Impression, Reward
from streams import faust_topics, metrics, tables
from streams.agents import RUNTIME
from streams.app import app
from streams.edge import bare_topic, decode_event
from streams.quarantine import count_evictions, crash_counted, guarded, load_owned

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 1.0


@app.agent(faust_topics.join_inputs)
@crash_counted
async def feedback_join(stream):
    tries = RUNTIME.settings.app.poison_retries
    async for event in stream.events():
        await guarded(event, lambda event=event: join_event(event), "feedback_join", tries)


async def join_event(event) -> None:
    """One impression, click or sweep: the user's pending join updated and stored, then its rewards sent."""
    window = RUNTIME.settings.worker.feedback_window_seconds
    bounds, evicted = RUNTIME.bounds, Evictions()
    topic = bare_topic(event.message.topic)
    now = time.time()
    if topic == "impressions":
        impression = await decode_event(event, Impression)
        if impression is None:
            return
        metrics.EVENTS.labels(topic=topic, kind="impression").inc()
        user_id = impression.user_id
        join = await load_owned(tables.pending_join, user_id, PendingJoin, event) or PendingJoin()
        rewards = add_impression(join, impression, window, now, bounds, evicted)
    elif topic == "feedback":
        feedback = await decode_event(event, Feedback)
        if feedback is None:
            return
        metrics.EVENTS.labels(topic=topic, kind=feedback.kind).inc()
        user_id = feedback.user_id
        join = await load_owned(tables.pending_join, user_id, PendingJoin, event) or PendingJoin()
        rewards = add_feedback(join, feedback, window, now, bounds, evicted)
    else:  # a sweep from the timer below
        user_id = (event.message.key or b"").decode(errors="replace")
        swept = await load_owned(tables.pending_join, user_id, PendingJoin, event)
        if swept is None:
            return
        join = swept
        rewards = close_expired(user_id, join, now)
    count_evictions("pending_join", evicted)
    if join.empty:
        tables.pending_join.pop(tables.key(user_id), None)
    else:
        payload = check_size(join.to_bytes(), bounds.max_state_bytes, f"pending join of {user_id}")
        tables.pending_join[tables.key(user_id)] = payload
    for reward in rewards:
        await send_reward(user_id, reward)


async def send_reward(user_id: str, reward: Reward) -> None:
    await (await faust_topics.rewards.send(key=tables.key(user_id), value=reward.to_bytes()))
    metrics.REWARDS.labels(source=reward.source.value, correct=str(reward.correct).lower()).inc()
    log.info(
        "click reward user_id=%s profile_id=%s request=%s clicked=%s",
        user_id,
        reward.profile_id,
        reward.target,
        reward.correct,
        extra={"user_id": user_id, "profile_id": reward.profile_id},
    )


@app.timer(SWEEP_EVERY_S)
async def sweep_closed_windows() -> None:
    now = time.time()
    for key, payload in list(tables.pending_join.items()):
        try:
            join = PendingJoin.from_bytes(payload)
        except ValueError:
            due = True  # the agent quarantines it on the sweep
        else:
            deadlines = [p.deadline for p in join.impressions.values()] + list(join.early_clicks.values())
            due = bool(deadlines) and min(deadlines) <= now
        if due:
            await faust_topics.feedback_sweeps.send(key=key, value=b"")
