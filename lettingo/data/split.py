"""The paper's evaluation split.

Per user, ratings in time order (ties by item id): the target is the last rated item, validation the one
before, h_u the ``recent_size`` ratings before the target, H_u up to ``history_size`` older ratings before
h_u. Users are split into disjoint train / validation / test groups with a fixed seed.

With ``targets_per_user > 1`` each user also yields earlier positions as extra targets (the last k
positions), each with its own h_u and H_u taken strictly before it, to tighten confidence intervals.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from lettingo.data.types import Dataset, Rating


class UserGroup(StrEnum):
    """The split's user groups; a member names the :class:`DatasetSplit` attribute that lists them."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


@dataclass(frozen=True, slots=True)
class SplitConfig:
    recent_size: int = 10
    history_size: int = 70
    min_history: int = 5
    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 13

    def __post_init__(self) -> None:
        if not 0 <= self.validation_fraction + self.test_fraction < 1:
            raise ValueError("validation_fraction + test_fraction must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class UserSplit:
    """One evaluation case: predict ``target`` from the profile of ``long_history`` and ``recent``."""

    user_id: str
    long_history: tuple[Rating, ...]  # H_u, oldest first
    recent: tuple[Rating, ...]  # h_u, oldest first
    target: Rating
    position: int  # 0 = the user's last rating, 1 = the one before, ...


def cases_for_user(ratings: list[Rating], cfg: SplitConfig, positions: range) -> list[UserSplit]:
    """Cases at the given positions from the end (``ratings`` already in time order)."""
    out = []
    for pos in positions:
        t = len(ratings) - 1 - pos
        if t - cfg.recent_size < cfg.min_history:
            break
        recent = ratings[t - cfg.recent_size : t]
        history = ratings[max(0, t - cfg.recent_size - cfg.history_size) : t - cfg.recent_size]
        out.append(UserSplit(ratings[t].user_id, tuple(history), tuple(recent), ratings[t], pos))
    return out


@dataclass(frozen=True, slots=True)
class DatasetSplit:
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    cfg: SplitConfig

    def cases(self, dataset: Dataset, group: str, targets_per_user: int = 1, offset: int = 0) -> list[UserSplit]:
        """Evaluation cases of a user group. ``offset=1`` skips the final target and starts at the validation
        item, the way validation-time model selection must, so the final target is never looked at."""
        users = getattr(self, group)
        positions = range(offset, offset + targets_per_user)
        return [c for u in users for c in cases_for_user(dataset.ratings_by_user[u], self.cfg, positions)]


def split_dataset(dataset: Dataset, cfg: SplitConfig | None = None) -> DatasetSplit:
    """Disjoint train / validation / test user groups, reproducible for a seed."""
    cfg = cfg or SplitConfig()
    eligible = sorted(
        (u for u, rs in dataset.ratings_by_user.items() if len(rs) >= cfg.recent_size + cfg.min_history + 2),
        key=lambda u: (len(u), u),
    )
    random.Random(cfg.seed).shuffle(eligible)
    n_test = round(len(eligible) * cfg.test_fraction)
    n_val = round(len(eligible) * cfg.validation_fraction)
    return DatasetSplit(
        train=tuple(eligible[n_test + n_val :]),
        validation=tuple(eligible[n_test : n_test + n_val]),
        test=tuple(eligible[:n_test]),
        cfg=cfg,
    )
