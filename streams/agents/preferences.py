"""preferences: ``profile-candidates`` open rounds on the per-user scoreboard; ``rewards`` score them;
every new (P+, P-) pair goes to ``preference-pairs``.

Each candidate seen is handed to task evaluation (``rated-events``), which tests it at once on the user's later
rated events: a candidate generated after them (a lagging generator) still gets its rewards. A task-evaluation
reward counts once per (candidate, rated event), the event named by the reward's ``event-id`` header.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lettingo.bounds import Evictions, check_size
from lettingo.pairs import PairConfig
from lettingo.records import ProfileCandidate, Reward, RewardSource
from lettingo.scoreboard import Scoreboard, task_key
from lettingo.stream_eval import EvalTrigger
from streams import metrics, tables
from streams.edge import decode_event
from streams.eval_jobs import EVENT_ID_HEADER
from streams.faust_topics import raw_topic
from streams.kafka.topics import PROFILE_CANDIDATES, REWARDS
from streams.quarantine import count_evictions, crash_counted, guarded, load_owned
from streams.regen_jobs import prompt_for_ref

if TYPE_CHECKING:
    from streams.app import Worker

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    """Declare the preferences agent (candidates and rewards as one stream) on ``worker``'s app."""
    app = worker.app
    tries = worker.settings.app.poison_retries
    candidates = worker.topics.profile_candidates.name

    @app.agent(raw_topic(app, worker.settings, PROFILE_CANDIDATES, REWARDS))
    @crash_counted
    async def preferences(stream):
        async for event in stream.events():
            if event.message.topic == candidates:
                await guarded(worker, event, lambda event=event: file_candidate(worker, event), "preferences", tries)
            else:
                await guarded(worker, event, lambda event=event: score_reward(worker, event), "preferences", tries)


def store_board(worker: Worker, user_id: str, board: Scoreboard, evicted: Evictions) -> None:
    count_evictions("scoreboard", evicted)
    payload = check_size(board.to_bytes(), worker.runtime.bounds.max_state_bytes, f"scoreboard of {user_id}")
    worker.tables.scoreboard[tables.key(user_id)] = payload


async def file_candidate(worker: Worker, event) -> None:
    candidate = await decode_event(worker, event, worker.topics.profile_candidates)
    if candidate is None:
        return
    evicted = Evictions()
    board = await load_owned(worker, worker.tables.scoreboard, candidate.user_id, Scoreboard, event) or Scoreboard()
    # The round's prompt is the generation prompt the candidates were sampled from: the trainer's prompt.
    prompt = candidate.prompt or _prompt_for(worker, candidate)
    if board.add_candidate(candidate, prompt, worker.runtime.bounds, evicted):
        store_board(worker, candidate.user_id, board, evicted)
    count_evictions("scoreboard", evicted)
    # Also for one already filed (a replay after a crash): task evaluation drops what it has rewarded.
    trigger = EvalTrigger(user_id=candidate.user_id, profile_id=candidate.profile_id)
    await (await worker.topics.rated_events.send(tables.key(candidate.user_id), trigger.to_bytes()))


async def score_reward(worker: Worker, event) -> None:
    reward = await decode_event(worker, event, worker.topics.rewards)
    if reward is None:
        return
    evicted = Evictions()
    board = await load_owned(worker, worker.tables.scoreboard, reward.user_id, Scoreboard, event)
    recorded = board is not None and board.record(reward, _key(event, reward), worker.runtime.bounds, evicted)
    count_evictions("scoreboard", evicted)
    if board is None or not recorded:
        return
    s = worker.settings
    pairs = board.new_pairs(reward.user_id, s.pairs.min_rewards, PairConfig(s.pairs.max_per_round, s.pairs.min_gap))
    store_board(worker, reward.user_id, board, evicted)
    for pair in pairs:
        await (await worker.topics.preference_pairs.send(tables.key(pair.user_id), pair.to_bytes()))
        metrics.PAIRS.inc()
        log.info(
            "preference pair user_id=%s chosen=%s (%.2f) rejected=%s (%.2f)",
            pair.user_id,
            pair.chosen_profile_id,
            pair.chosen_reward,
            pair.rejected_profile_id,
            pair.rejected_reward,
            extra={"user_id": pair.user_id, "model_version": pair.policy_version},
        )


def _key(event, reward: Reward) -> str | None:
    """A task-evaluation reward's key: its rated event (from the ``event-id`` header); others the default."""
    headers = event.message.headers or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    event_id = next((v for k, v in pairs if k == EVENT_ID_HEADER), None)
    if reward.source == RewardSource.TASK_EVAL and event_id:
        return task_key(event_id.decode() if isinstance(event_id, bytes) else event_id)
    return None


def _prompt_for(worker: Worker, candidate: ProfileCandidate) -> str:
    """For a candidate from a producer that did not carry its prompt: rebuilt from the user's kept history."""
    return prompt_for_ref(worker, candidate.user_id, candidate.history_ref).text
