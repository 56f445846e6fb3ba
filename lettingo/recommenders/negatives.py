"""Popularity-matched negative items for the ranking task, reproducible per (seed, user, target, draw)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from lettingo.data import Dataset


@dataclass(frozen=True, slots=True)
class RankingCandidates:
    candidate_ids: tuple[str, ...]
    target_index: int


class NegativeSampler:
    """Negatives drawn among the items whose popularity rank is nearest the target's, never seen by the user.

    Matching popularity keeps a reader from winning by "pick the blockbuster"; the random generator is derived
    from a hash, so the candidates of a case do not depend on the order in which cases are evaluated.
    """

    def __init__(self, dataset: Dataset, n_negatives: int = 9, window: int = 100, seed: int = 13) -> None:
        if n_negatives < 1:
            raise ValueError("n_negatives must be at least 1")
        self.dataset = dataset
        self.n_negatives = n_negatives
        self.window = window
        self.seed = seed
        pop = dataset.item_popularity
        self._by_popularity = sorted(pop, key=lambda i: (-pop[i], i.zfill(12)))
        self._rank = {item: n for n, item in enumerate(self._by_popularity)}
        self._seen = {u: frozenset(r.item_id for r in rs) for u, rs in dataset.ratings_by_user.items()}

    def _rng(self, user_id: str, target_id: str, draw: int) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}|{user_id}|{target_id}|{draw}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def sample(self, user_id: str, target_id: str, draw: int = 0) -> RankingCandidates:
        rng = self._rng(user_id, target_id, draw)
        seen = self._seen.get(user_id, frozenset()) | {target_id}
        center = self._rank.get(target_id, len(self._by_popularity) // 2)
        half = self.window
        while True:
            lo, hi = max(0, center - half), min(len(self._by_popularity), center + half + 1)
            pool = [i for i in self._by_popularity[lo:hi] if i not in seen]
            if len(pool) >= self.n_negatives or (lo == 0 and hi == len(self._by_popularity)):
                break
            half *= 2
        if len(pool) < self.n_negatives:
            raise ValueError(f"only {len(pool)} unseen items for user {user_id}; need {self.n_negatives}")
        candidates = [*rng.sample(pool, self.n_negatives), target_id]
        rng.shuffle(candidates)
        return RankingCandidates(tuple(candidates), candidates.index(target_id))
