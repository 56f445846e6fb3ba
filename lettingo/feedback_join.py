"""Join impressions with their feedback by request id, within a window.

A click (or purchase, or rating) on an impression's item before the window closes is a positive reward for the
profile that served it; an impression with no click when its window closes is a negative one. Feedback may
arrive before its impression; it waits for it, within the same window. Each impression yields one reward at
most, so re-applying an impression or a click changes nothing.

A user's open impressions, the item ids kept of each, and the clicks waiting for their impression are capped
(:class:`lettingo.bounds.StateBounds`): past a cap the oldest are dropped, without a reward, and counted.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field

from lettingo.bounds import Evictions, StateBounds
from lettingo.records import Feedback, Impression, Reward, RewardSource

POSITIVE_KINDS = frozenset({"click", "purchase", "rating"})


class PendingImpression(BaseModel):
    request_id: str
    profile_id: str
    item_ids: list[str] = Field(default_factory=list)
    deadline: float
    rewarded: bool = False


class PendingJoin(BaseModel):
    """One user's open impressions, and clicks still waiting for their impression."""

    impressions: dict[str, PendingImpression] = Field(default_factory=dict)
    early_clicks: dict[str, float] = Field(default_factory=dict)  # request id -> deadline

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        return cls.model_validate_json(payload)

    @property
    def empty(self) -> bool:
        return not self.impressions and not self.early_clicks


def _reward(user_id: str, pending: PendingImpression, clicked: bool, ts: float) -> Reward:
    return Reward(
        user_id=user_id,
        profile_id=pending.profile_id,
        source=RewardSource.CLICK,
        target=pending.request_id,
        actual="click" if clicked else "no_click",
        correct=clicked,
        value=1.0 if clicked else 0.0,
        ts=ts,
    )


def _drop_oldest(entries: dict, limit: int, deadline_of, evicted: Evictions, what: str) -> None:
    """Keep room for one more entry: drop those with the earliest deadlines beyond ``limit - 1``."""
    over = len(entries) - (limit - 1)
    if over <= 0:
        return
    for key in sorted(entries, key=lambda k: deadline_of(entries[k]))[:over]:
        del entries[key]
    evicted[what] += over


def add_impression(
    join: PendingJoin,
    impression: Impression,
    window_s: float,
    now: float,
    bounds: StateBounds = StateBounds(),
    evicted: Evictions | None = None,
) -> list[Reward]:
    evicted = Evictions() if evicted is None else evicted
    if impression.request_id in join.impressions:
        return []
    _drop_oldest(join.impressions, bounds.max_pending_impressions, lambda p: p.deadline, evicted, "impressions")
    kept = impression.item_ids[: bounds.max_impression_items]
    evicted["impression_items"] += len(impression.item_ids) - len(kept)
    pending = PendingImpression(
        request_id=impression.request_id,
        profile_id=impression.profile_id,
        item_ids=list(kept),
        deadline=now + window_s,
    )
    join.impressions[impression.request_id] = pending
    if join.early_clicks.pop(impression.request_id, None) is not None:
        pending.rewarded = True
        return [_reward(impression.user_id, pending, True, now)]
    return []


def add_feedback(
    join: PendingJoin,
    feedback: Feedback,
    window_s: float,
    now: float,
    bounds: StateBounds = StateBounds(),
    evicted: Evictions | None = None,
) -> list[Reward]:
    evicted = Evictions() if evicted is None else evicted
    if feedback.kind not in POSITIVE_KINDS:
        return []
    pending = join.impressions.get(feedback.request_id)
    if pending is None:
        if feedback.request_id not in join.early_clicks:
            _drop_oldest(join.early_clicks, bounds.max_early_clicks, lambda deadline: deadline, evicted, "early_clicks")
            join.early_clicks[feedback.request_id] = now + window_s
        return []
    if pending.rewarded or now > pending.deadline:
        return []
    pending.rewarded = True
    return [_reward(feedback.user_id, pending, True, now)]


def close_expired(user_id: str, join: PendingJoin, now: float) -> list[Reward]:
    """Drop windows that closed; an unclicked impression among them is a negative reward."""
    rewards = []
    for request_id, pending in list(join.impressions.items()):
        if now >= pending.deadline:
            if not pending.rewarded:
                rewards.append(_reward(user_id, pending, False, now))
            del join.impressions[request_id]
    for request_id, deadline in list(join.early_clicks.items()):
        if now >= deadline:
            del join.early_clicks[request_id]
    return rewards
