"""Preference pairs: every (P+, P-) of one user, as TRL prompt / chosen / rejected with provenance.

A pair needs the chosen profile's reward to beat the rejected one's by more than ``min_gap``; with one 0/1
target that is exactly the paper's P+ x P-. Profiles with the same text are merged first (their rewards
averaged), so no pair compares a text with itself. Pairs with the widest reward gap are kept first.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from lettingo.offline_files import PairRow


@dataclass(frozen=True, slots=True)
class ScoredProfile:
    profile_id: str
    text: str
    reward: float
    generator: str = ""
    model_version: str = ""


@dataclass(frozen=True)
class PairConfig:
    max_pairs_per_user: int = 4
    min_gap: float = 0.0  # chosen.reward - rejected.reward must be strictly greater


def _merge_duplicates(profiles: Sequence[ScoredProfile]) -> list[ScoredProfile]:
    groups: dict[str, list[ScoredProfile]] = {}
    for p in profiles:
        if p.text.strip():
            groups.setdefault(p.text.strip(), []).append(p)
    merged = []
    for text, group in groups.items():
        first = group[0]
        reward = sum(p.reward for p in group) / len(group)
        merged.append(ScoredProfile(first.profile_id, text, reward, first.generator, first.model_version))
    return merged


def pair_id(user_id: str, chosen_id: str, rejected_id: str, policy_version: str) -> str:
    return hashlib.sha256(f"{user_id}|{chosen_id}|{rejected_id}|{policy_version}".encode()).hexdigest()[:32]


def build_pairs(
    user_id: str,
    prompt: str,
    profiles: Sequence[ScoredProfile],
    policy_version: str | None = None,
    config: PairConfig | None = None,
    reader_version: str = "",
) -> list[PairRow]:
    """Pairs of one user: :class:`~lettingo.records.PreferencePair` records with their provenance (generators,
    reader), which the pairs topic and the trainer ignore."""
    config = config or PairConfig()
    unique = _merge_duplicates(profiles)
    if policy_version is None:
        versions = Counter(p.model_version for p in profiles if p.model_version)
        policy_version = versions.most_common(1)[0][0] if versions else "unknown"
    candidates = [
        (chosen, rejected)
        for chosen in unique
        for rejected in unique
        if chosen.reward - rejected.reward > config.min_gap
    ]
    candidates.sort(key=lambda cr: (-(cr[0].reward - cr[1].reward), cr[0].profile_id, cr[1].profile_id))
    out = []
    for chosen, rejected in candidates[: config.max_pairs_per_user]:
        record = PairRow(
            pair_id=pair_id(user_id, chosen.profile_id, rejected.profile_id, policy_version),
            user_id=user_id,
            prompt=prompt,
            chosen=chosen.text,
            rejected=rejected.text,
            chosen_reward=chosen.reward,
            rejected_reward=rejected.reward,
            chosen_profile_id=chosen.profile_id,
            rejected_profile_id=rejected.profile_id,
            policy_version=policy_version,
            chosen_generator=chosen.generator,
            rejected_generator=rejected.generator,
            reader_version=reader_version,
        )
        out.append(record)
    return out
