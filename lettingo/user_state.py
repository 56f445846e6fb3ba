"""A user's streaming state: recent window, bounded long history, attribute and sentiment distributions, counts.

Applying an interaction is idempotent by event id: a replayed event (a retried batch, a restarted worker, a
dataset replayed twice) leaves the state as it was. Ids are remembered as short digests, up to
``seen_events_max`` per user; that bound is the idempotence horizon.

Every applied event gets a sequence number (``seq``); a profile request names the history it must describe as
``"<seq>@<event id>"`` so that the profile generated for it does not depend on when the request is served.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from lettingo.data import Item as CatalogItem
from lettingo.data import LabelScheme
from lettingo.prompts.profile import HistoryEntry
from lettingo.records import Interaction, Item


class HistoryEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    event_id: str
    item_id: str
    kind: str
    rating: float | None = None
    sentiment: str | None = None
    attributes: tuple[str, ...] = ()
    ts: float


class UserState(BaseModel):
    user_id: str
    count: int = 0
    counts_by_kind: dict[str, int] = Field(default_factory=dict)
    events: list[HistoryEvent] = Field(default_factory=list)  # oldest first, bounded
    attribute_counts: dict[str, float] = Field(default_factory=dict)
    sentiment_counts: dict[str, float] = Field(default_factory=dict)
    seen: list[str] = Field(default_factory=list)  # digests of applied event ids, oldest first
    last_event_id: str = ""
    last_ts: float = 0.0
    # Drift bookkeeping: the distributions when the last profile was requested.
    profiled_at: int = 0
    profiled_ts: float = 0.0
    reference_attributes: dict[str, float] = Field(default_factory=dict)
    reference_sentiments: dict[str, float] = Field(default_factory=dict)
    requests: int = 0
    last_request: str = ""  # the last ProfileRequest as JSON, re-sent if its triggering event is replayed

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_defaults=True).encode()

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        return cls.model_validate_json(payload)

    @property
    def history_ref(self) -> str:
        return f"{self.count}@{self.last_event_id}"

    def events_before(self, event_id: str) -> list[HistoryEvent]:
        """The kept events applied before ``event_id`` (all of them when it is not applied yet)."""
        seq = next((e.seq for e in self.events if e.event_id == event_id), None)
        return [e for e in self.events if seq is None or e.seq < seq]

    def events_up_to(self, history_ref: str) -> list[HistoryEvent]:
        """The kept events a request's ``history_ref`` covers (all of them when the ref is empty)."""
        upto = int(history_ref.split("@", 1)[0]) if history_ref else self.count
        return [e for e in self.events if e.seq <= upto]

    def mark_profiled(self) -> None:
        """Snapshot the distributions as the reference a later drift is measured against."""
        self.profiled_at = self.count
        self.profiled_ts = self.last_ts
        self.reference_attributes = dict(self.attribute_counts)
        self.reference_sentiments = dict(self.sentiment_counts)
        self.requests += 1


def event_digest(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


def apply_interaction(
    state: UserState,
    event: Interaction,
    item: Item | None,
    labels: LabelScheme,
    *,
    keep_events: int,
    seen_max: int,
) -> bool:
    """Apply ``event`` to ``state`` in place; False (and no change) when it was applied before."""
    digest = event_digest(event.event_id)
    if digest in state.seen:
        return False
    state.seen.append(digest)
    del state.seen[:-seen_max]
    state.count += 1
    state.counts_by_kind[event.kind.value] = state.counts_by_kind.get(event.kind.value, 0) + 1
    sentiment = labels.label(event.rating).value if event.rating is not None else None
    attributes = tuple(item.attributes) if item else ()
    state.events.append(
        HistoryEvent(
            seq=state.count,
            event_id=event.event_id,
            item_id=event.item_id,
            kind=event.kind.value,
            rating=event.rating,
            sentiment=sentiment,
            attributes=attributes,
            ts=event.ts,
        )
    )
    del state.events[:-keep_events]
    for attribute in attributes:
        state.attribute_counts[attribute] = state.attribute_counts.get(attribute, 0.0) + 1.0
    if sentiment is not None:
        state.sentiment_counts[sentiment] = state.sentiment_counts.get(sentiment, 0.0) + 1.0
    state.last_event_id = event.event_id
    state.last_ts = max(state.last_ts, event.ts)
    return True


def to_catalog_item(item: Item) -> CatalogItem:
    return CatalogItem(item.item_id, item.title, tuple(item.attributes), item.year)


def history_entries(events: list[HistoryEvent], catalog: Mapping[str, Item], labels: LabelScheme) -> list[HistoryEntry]:
    """Rated events with a known item, as the profile prompt's H_u entries."""
    entries = []
    for e in events:
        item = catalog.get(e.item_id)
        if e.rating is not None and item is not None:
            entries.append(HistoryEntry(to_catalog_item(item), e.rating, labels.label(e.rating)))
    return entries
