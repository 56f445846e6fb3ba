"""A user's explored candidates, their rewards, and the preference pairs they make.

An exploring regeneration opens a *round*: K candidate profiles from one prompt. Each later rated interaction
of the user tests every open candidate with f_Rec (task evaluation, :mod:`lettingo.stream_eval`); click
rewards count too when they name a candidate. Once every candidate of a round has ``min_rewards`` rewards, the
round's candidates are paired exactly as offline (:func:`lettingo.pairs.build_pairs`: chosen beats rejected by
more than ``min_gap`` in mean reward, widest gaps first, duplicates merged), the pairs are emitted once and the
round closes: its candidates are no longer evaluated.

Rewards are recorded once per key: a task-evaluation reward per (candidate, rated event id), so a reward
delivered twice (a replay after a restart, a late candidate's catch-up racing a live event) is counted once;
other rewards per (candidate, source, target).

A round only learns from what came *after* its history: its ``round_id`` is the history reference
(:class:`lettingo.history_ref.HistoryRef`) its prompt was built from, and only rated events with a higher
position in the user's event sequence may test its candidates (:meth:`Scoreboard.wants`);
earlier ones were in the prompt.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field

from lettingo.bounds import Evictions, StateBounds
from lettingo.history_ref import HistoryRefField
from lettingo.pairs import PairConfig, ScoredProfile, build_pairs
from lettingo.records import PreferencePair, ProfileCandidate, Reward

MAX_ROUNDS = 3


class CandidateScore(BaseModel):
    profile_id: str
    text: str
    generator: str = ""
    rewarded: list[str] = Field(default_factory=list)  # "<source>:<target>" already counted
    total: float = 0.0

    @property
    def n(self) -> int:
        return len(self.rewarded)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0


class Round(BaseModel):
    round_id: HistoryRefField  # the history the candidates were generated from (None: not named)
    prompt: str
    policy_version: str
    candidates: dict[str, CandidateScore] = Field(default_factory=dict)
    emitted_pairs: list[str] = Field(default_factory=list)
    closed: bool = False  # paired: no more task evaluation

    @property
    def seq(self) -> int:
        """The position of the last event of the history the candidates were generated from; 0 when the
        candidates named none, so that every rated event may test them."""
        return 0 if self.round_id is None else self.round_id.count


def task_key(event_id: str) -> str:
    """A task-evaluation reward's key on its candidate: the rated event it was measured on."""
    return f"task_eval:{event_id}"


class Scoreboard(BaseModel):
    rounds: list[Round] = Field(default_factory=list)  # oldest first, at most MAX_ROUNDS

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        return cls.model_validate_json(payload)

    def open_candidates(self) -> list[CandidateScore]:
        return [c for r in self.rounds if not r.closed for c in r.candidates.values()]

    def find(self, profile_id: str) -> tuple[Round, CandidateScore] | None:
        return next(((r, r.candidates[profile_id]) for r in self.rounds if profile_id in r.candidates), None)

    def wants(self, profile_id: str, event_seq: int, event_id: str) -> bool:
        """Whether the rated event at ``event_seq`` should test ``profile_id``: its round is open, the event came
        after the round's history (no leakage), and it has not rewarded this candidate yet."""
        found = self.find(profile_id)
        if found is None:
            return False
        round_, score = found
        return not round_.closed and event_seq > round_.seq and task_key(event_id) not in score.rewarded

    def add_candidate(
        self,
        candidate: ProfileCandidate,
        prompt: str,
        bounds: StateBounds = StateBounds(),
        evicted: Evictions | None = None,
    ) -> bool:
        """File ``candidate`` under its round (opened on first sight); False if it was already there, or the round
        is full (``bounds.max_round_candidates``: counted in ``evicted``)."""
        evicted = Evictions() if evicted is None else evicted
        round_ = next((r for r in self.rounds if r.round_id == candidate.history_ref), None)
        if round_ is None:
            round_ = Round(round_id=candidate.history_ref, prompt=prompt, policy_version=candidate.model_version)
            self.rounds.append(round_)
            evicted["rounds"] += max(0, len(self.rounds) - MAX_ROUNDS)
            del self.rounds[:-MAX_ROUNDS]
        if candidate.profile_id in round_.candidates:
            return False
        if len(round_.candidates) >= bounds.max_round_candidates:
            evicted["candidates"] += 1
            return False
        round_.candidates[candidate.profile_id] = CandidateScore(
            profile_id=candidate.profile_id, text=candidate.text, generator=candidate.generator
        )
        return True

    def record(
        self,
        reward: Reward,
        key: str | None = None,
        bounds: StateBounds = StateBounds(),
        evicted: Evictions | None = None,
    ) -> bool:
        """Count ``reward`` for its candidate under ``key`` (default ``"<source>:<target>"``); False if the
        candidate is unknown, the key already counted, or the candidate has ``bounds.max_candidate_rewards``."""
        evicted = Evictions() if evicted is None else evicted
        key = key or f"{reward.source.value}:{reward.target}"
        for round_ in self.rounds:
            score = round_.candidates.get(reward.profile_id)
            if score is not None and key not in score.rewarded:
                if len(score.rewarded) >= bounds.max_candidate_rewards:
                    evicted["rewards"] += 1
                    return False
                score.rewarded.append(key)
                score.total += reward.value
                return True
        return False

    def new_pairs(self, user_id: str, min_rewards: int, config: PairConfig | None = None) -> list[PreferencePair]:
        """The pairs of every open round whose candidates all have ``min_rewards`` rewards; those rounds close."""
        pairs = []
        for round_ in self.rounds:
            scores = list(round_.candidates.values())
            if round_.closed or len(scores) < 2 or any(s.n < min_rewards for s in scores):
                continue
            round_.closed = True
            profiles = [ScoredProfile(s.profile_id, s.text, s.mean, s.generator, round_.policy_version) for s in scores]
            for pair in build_pairs(user_id, round_.prompt, profiles, round_.policy_version, config):
                record = PreferencePair.model_validate(pair.model_dump())  # the topic's record: no provenance
                if record.pair_id not in round_.emitted_pairs:
                    round_.emitted_pairs.append(record.pair_id)
                    pairs.append(record)
        return pairs
