"""feedback join: ``impressions`` x ``feedback`` by request id within a window -> click ``rewards``.

An impression without a click when its window closes is a negative reward. Closing windows needs a clock: a
timer finds users with closed windows in this worker's partitions and sends them a sweep message, so that the
table is only ever changed by this agent, inside stream iteration (Faust's RocksDB store requires that).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from lettingo.bounds import Evictions, check_size
from lettingo.feedback_join import PendingJoin, add_feedback, add_impression, close_expired
from lettingo.records import Reward
from streams import metrics, tables
from streams.edge import decode_event
from streams.faust_topics import raw_topic
from streams.kafka.topics import FEEDBACK, FEEDBACK_SWEEPS, IMPRESSIONS
from streams.quarantine import count_evictions, crash_counted, guarded, load_owned

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 1.0


def register(worker: Worker) -> None:
    """Declare the feedback join (impressions, clicks and its own sweeps as one stream) and its sweep timer."""
    app = worker.app
    tries = worker.settings.app.poison_retries

    @app.agent(raw_topic(app, worker.settings, IMPRESSIONS, FEEDBACK, FEEDBACK_SWEEPS))
    @crash_counted
    async def feedback_join(stream):
        async for event in stream.events():
            await guarded(worker, event, lambda event=event: join_event(worker, event), "feedback_join", tries)

    @app.timer(SWEEP_EVERY_S)
    async def sweep_closed_windows() -> None:
        await sweep(worker)


async def join_event(worker: Worker, event) -> None:
    """One impression, click or sweep: the user's pending join updated and stored, then its rewards sent."""
    window = worker.settings.worker.feedback_window_seconds
    bounds, evicted = worker.runtime.bounds, Evictions()
    topic = event.message.topic
    table = worker.tables.pending_join
    now = time.time()
    if topic == worker.topics.impressions.name:
        impression = await decode_event(worker, event, worker.topics.impressions)
        if impression is None:
            return
        metrics.EVENTS.labels(topic=IMPRESSIONS.name, kind="impression").inc()
        user_id = impression.user_id
        join = await load_owned(worker, table, user_id, PendingJoin, event) or PendingJoin()
        rewards = add_impression(join, impression, window, now, bounds, evicted)
    elif topic == worker.topics.feedback.name:
        feedback = await decode_event(worker, event, worker.topics.feedback)
        if feedback is None:
            return
        metrics.EVENTS.labels(topic=FEEDBACK.name, kind=feedback.kind).inc()
        user_id = feedback.user_id
        join = await load_owned(worker, table, user_id, PendingJoin, event) or PendingJoin()
        rewards = add_feedback(join, feedback, window, now, bounds, evicted)
    else:  # a sweep from the timer below
        user_id = (event.message.key or b"").decode(errors="replace")
        swept = await load_owned(worker, table, user_id, PendingJoin, event)
        if swept is None:
            return
        join = swept
        rewards = close_expired(user_id, join, now)
    count_evictions("pending_join", evicted)
    if join.empty:
        table.pop(tables.key(user_id), None)
    else:
        payload = check_size(join.to_bytes(), bounds.max_state_bytes, f"pending join of {user_id}")
        table[tables.key(user_id)] = payload
    for reward in rewards:
        await send_reward(worker, user_id, reward)


async def send_reward(worker: Worker, user_id: str, reward: Reward) -> None:
    await (await worker.topics.rewards.send(tables.key(user_id), reward.to_bytes()))
    metrics.REWARDS.labels(source=reward.source.value, correct=str(reward.correct).lower()).inc()
    log.info(
        "click reward user_id=%s profile_id=%s request=%s clicked=%s",
        user_id,
        reward.profile_id,
        reward.target,
        reward.correct,
        extra={"user_id": user_id, "profile_id": reward.profile_id},
    )


async def sweep(worker: Worker) -> None:
    """Send a sweep to every user of this worker's partitions whose join has a closed window."""
    now = time.time()
    for key, payload in list(worker.tables.pending_join.items()):
        try:
            join = PendingJoin.from_bytes(payload)
        except ValueError:
            due = True  # the agent quarantines it on the sweep
        else:
            deadlines = [p.deadline for p in join.impressions.values()] + list(join.early_clicks.values())
            due = bool(deadlines) and min(deadlines) <= now
        if due:
            await worker.topics.feedback_sweeps.send(key, b"")
