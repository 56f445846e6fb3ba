"""preferences: ``profile-candidates`` open rounds on the per-user scoreboard; ``rewards`` score them;
every new (P+, P-) pair goes to ``preference-pairs``."""

from __future__ import annotations

import logging

from lettingo.pairs import PairConfig
from lettingo.records import ProfileCandidate, Reward
from lettingo.scoreboard import Scoreboard
from streams import faust_topics, metrics, tables
from streams.agents import RUNTIME
from streams.app import app
from streams.edge import bare_topic, decode_event

log = logging.getLogger(__name__)


@app.agent(faust_topics.candidates_and_rewards)
async def preferences(stream):
    async for event in stream.events():
        if bare_topic(event.message.topic) == "profile-candidates":
            candidate = await decode_event(event, ProfileCandidate)
            if candidate is None:
                continue
            board = tables.load(tables.scoreboard, candidate.user_id, Scoreboard) or Scoreboard()
            # The round's prompt is the generation prompt the candidates were sampled from: the trainer's prompt.
            if board.add_candidate(candidate, prompt=candidate.prompt or _prompt_for(candidate)):
                tables.store(tables.scoreboard, candidate.user_id, board)
            continue
        reward = await decode_event(event, Reward)
        if reward is None:
            continue
        board = tables.load(tables.scoreboard, reward.user_id, Scoreboard)
        if board is None or not board.record(reward):
            continue
        s = RUNTIME.settings
        pairs = board.new_pairs(reward.user_id, s.pairs_min_rewards, PairConfig(s.pairs_max_per_round, s.pairs_min_gap))
        tables.store(tables.scoreboard, reward.user_id, board)
        for pair in pairs:
            await (await faust_topics.preference_pairs.send(key=tables.key(pair.user_id), value=pair.to_bytes()))
            metrics.PAIRS.inc()
            log.info("preference pair user_id=%s chosen=%s (%.2f) rejected=%s (%.2f)", pair.user_id,
                     pair.chosen_profile_id, pair.chosen_reward,
                     pair.rejected_profile_id, pair.rejected_reward)  # fmt: skip


def _prompt_for(candidate: ProfileCandidate) -> str:
    """For a candidate from a producer that did not carry its prompt: rebuilt from the user's kept history."""
    from streams.agents.regenerate import prompt_for_ref

    return prompt_for_ref(candidate.user_id, candidate.history_ref).text
