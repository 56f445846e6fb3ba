"""A user's streaming state: recent window, bounded long history, attribute and sentiment distributions, counts.

Applying an interaction is idempotent by event id: a replayed event (a retried batch, a restarted worker, a
dataset replayed twice) leaves the state as it was. Ids are remembered as 8-byte digests, up to
``seen_events_max`` per user; that bound is the idempotence horizon. In the stored JSON they are one base64
string (:class:`SeenIds`, about 11 bytes an id), not a list of hex strings (19 bytes an id, one Python string each
to parse), since the whole state is read and written for every batch of a user's events.

Every applied event gets a sequence number (``seq``); a profile request names the history it must describe as
``"<seq>@<event id>"`` so that the profile generated for it does not depend on when the request is served.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from lettingo.bounds import Evictions, StateBounds, StateTooLarge, cap_counts
from lettingo.data import Item as CatalogItem
from lettingo.data import LabelScheme
from lettingo.history_ref import HistoryRef
from lettingo.prompts.profile import HistoryEntry
from lettingo.records import Interaction, Item, RatedItem

DIGEST_BYTES = 8


class SeenIds:
    """Digests of the applied event ids, oldest first, bounded by :meth:`add`'s ``limit``.

    Kept packed (``DIGEST_BYTES`` each); in JSON one base64 string. The first few lookups after a load scan the
    packed bytes (a user's state is loaded once per batch, which may hold one or two of their events); from
    ``SCANS`` on, a set is built. Reads a list of hex digests too (states written before this form).
    """

    __slots__ = ("_packed", "_scans", "_set")
    SCANS = 8

    def __init__(self, digests: Iterable[bytes] = ()) -> None:
        self._packed = bytearray(b"".join(digests))
        self._set: set[bytes] | None = None
        self._scans = 0

    @classmethod
    def from_packed(cls, packed: bytes) -> SeenIds:
        if len(packed) % DIGEST_BYTES:
            raise ValueError(f"seen ids: {len(packed)} bytes is not a whole number of {DIGEST_BYTES}-byte digests")
        seen = cls()
        seen._packed = bytearray(packed)
        return seen

    def __contains__(self, digest: bytes) -> bool:
        if self._set is not None:
            return digest in self._set
        self._scans += 1
        if self._scans > self.SCANS:
            self._set = set(self)
            return digest in self._set
        packed, at = self._packed, self._packed.find(digest)
        while at >= 0 and at % DIGEST_BYTES:  # a match across two digests is no match
            at = packed.find(digest, at + 1)
        return at >= 0

    def __len__(self) -> int:
        return len(self._packed) // DIGEST_BYTES

    def __iter__(self) -> Iterator[bytes]:
        p = self._packed
        return (bytes(p[i : i + DIGEST_BYTES]) for i in range(0, len(p), DIGEST_BYTES))

    def add(self, digest: bytes, limit: int) -> int:
        """Remember ``digest`` (newest), forgetting the oldest beyond ``limit``; how many were forgotten."""
        self._packed += digest
        if self._set is not None:
            self._set.add(digest)
        over = len(self._packed) - limit * DIGEST_BYTES
        if over > 0:
            if self._set is not None:
                for i in range(0, over, DIGEST_BYTES):
                    self._set.discard(bytes(self._packed[i : i + DIGEST_BYTES]))
            del self._packed[:over]
            return over // DIGEST_BYTES
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeenIds) and self._packed == other._packed

    __hash__ = None  # type: ignore[assignment]  # mutable, so unhashable; typeshed types it as a method

    def __repr__(self) -> str:
        return f"SeenIds({len(self)} ids)"

    def __deepcopy__(self, memo: dict) -> SeenIds:
        return SeenIds.from_packed(bytes(self._packed))

    def to_text(self) -> str:
        return base64.b64encode(self._packed).decode("ascii")

    @classmethod
    def parse(cls, value: Any) -> SeenIds:
        if isinstance(value, SeenIds):
            return value
        if isinstance(value, str):
            try:
                return cls.from_packed(base64.b64decode(value, validate=True))
            except binascii.Error as e:
                raise ValueError(f"seen ids: not base64 ({e})") from e
        if isinstance(value, list | tuple):  # the earlier form: hex digests
            return cls(bytes.fromhex(v) for v in value)
        raise ValueError(f"seen ids: expected a base64 string, got {type(value).__name__}")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(cls.to_text)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "contentEncoding": "base64"}


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
    seen: SeenIds = Field(default_factory=SeenIds)  # digests of applied event ids, oldest first
    last_event_id: str = ""
    last_ts: float = 0.0
    # Drift bookkeeping: the distributions when the last profile was requested.
    profiled_at: int = 0
    profiled_ts: float = 0.0
    reference_attributes: dict[str, float] = Field(default_factory=dict)
    reference_sentiments: dict[str, float] = Field(default_factory=dict)
    requests: int = 0
    last_request: str = ""  # the last ProfileRequest as JSON, re-sent if its triggering event is replayed
    # Source (an input partition, "topic:partition") -> the position of the last of its events applied to this
    # state. Stored in the same value as the state it describes, so the state and the record of what it has
    # applied are written at once: a replayed event at or below its source's position is a duplicate, whatever
    # the bounded ``seen`` ids still remember (see :func:`lettingo.ingest.ingest_event`).
    positions: dict[str, int] = Field(default_factory=dict)
    # The user's latest erasure (its time) known when this state was begun or stored: every event it holds reached
    # Kafka after it. None: no erasure was known. A state loaded under a later erasure holds history the user asked
    # to forget, even when the forget agent has not deleted it yet (:mod:`lettingo.ingest_batch`).
    erased_at: float | None = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_defaults=True).encode()

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        return cls.model_validate_json(payload)

    @property
    def history_ref(self) -> HistoryRef:
        return HistoryRef.of(self.count, self.last_event_id)

    def has_applied(self, event_id: str) -> bool:
        return event_digest(event_id) in self.seen

    def has_applied_position(self, source: str, position: int) -> bool:
        """Whether the event at ``position`` of ``source`` was applied to this state (an input's positions only
        grow, and its events are applied in their order)."""
        return position <= self.positions.get(source, -1)

    def events_up_to(self, history_ref: HistoryRef | None) -> list[HistoryEvent]:
        """The kept events a request's ``history_ref`` covers (all of them when it names no history: the
        request asks for the user's latest)."""
        upto = self.count if history_ref is None else history_ref.count
        return [e for e in self.events if e.seq <= upto]

    def mark_profiled(self) -> None:
        """Snapshot the distributions as the reference a later drift is measured against."""
        self.profiled_at = self.count
        self.profiled_ts = self.last_ts
        self.reference_attributes = dict(self.attribute_counts)
        self.reference_sentiments = dict(self.sentiment_counts)
        self.requests += 1


def event_digest(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=DIGEST_BYTES).digest()


def apply_interaction(
    state: UserState,
    event: Interaction,
    item: Item | None,
    labels: LabelScheme,
    *,
    keep_events: int,
    seen_max: int,
    bounds: StateBounds = StateBounds(),
    evicted: Evictions | None = None,
) -> bool:
    """Apply ``event`` to ``state`` in place; False (and no change) when it was applied before.

    Every part of the state stays bounded: the kept events (``keep_events``), the remembered ids (``seen_max``),
    each event's attributes and the distinct attributes counted (``bounds``); what a bound drops is counted in
    ``evicted``."""
    evicted = Evictions() if evicted is None else evicted
    digest = event_digest(event.event_id)
    if digest in state.seen:
        return False
    evicted["seen_ids"] += state.seen.add(digest, seen_max)
    state.count += 1
    state.counts_by_kind[event.kind.value] = state.counts_by_kind.get(event.kind.value, 0) + 1
    sentiment = labels.label(event.rating).value if event.rating is not None else None
    attributes = tuple(item.attributes) if item else ()
    if len(attributes) > bounds.max_event_attributes:
        evicted["event_attributes"] += len(attributes) - bounds.max_event_attributes
        attributes = attributes[: bounds.max_event_attributes]
    state.events.append(
        HistoryEvent(  # validated in pydantic-core: faster than model_construct's Python loop over the fields
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
    if len(state.events) > keep_events:
        evicted["history"] += len(state.events) - keep_events
        del state.events[:-keep_events]
    for attribute in attributes:
        state.attribute_counts[attribute] = state.attribute_counts.get(attribute, 0.0) + 1.0
    cap_counts(state.attribute_counts, bounds.max_attribute_keys, evicted, "attribute_keys")
    if sentiment is not None:
        state.sentiment_counts[sentiment] = state.sentiment_counts.get(sentiment, 0.0) + 1.0
    state.last_event_id = event.event_id
    state.last_ts = max(state.last_ts, event.ts)
    return True


def fit_user_state(state: UserState, max_bytes: int, evicted: Evictions, unsent_from: int | None = None) -> bytes:
    """``state`` serialized under ``max_bytes`` (a catalogue of long attribute lists can make a full history too large
    to store). Until it fits, in place, what goes first:

    1. the oldest kept events before seq ``unsent_from`` (``history_bytes``; all but the newest when it is None);
    2. the attributes of the events from ``unsent_from`` on, the oldest first (``event_attributes``): their rated
       outputs are not sent yet, and a replay after a crash re-sends one only while the kept events hold it
       (:mod:`lettingo.ingest_batch`); an event's attributes are counted when it is applied and not read back;
    3. the oldest remembered ids (``seen_ids_bytes``; only with ``seen_events_max`` set near the byte bound);
    4. the oldest of the unsent events themselves (``unsent_history_bytes``): a crash before the send would lose
       their outputs.

    Raises :class:`StateTooLarge` only if the rest (bounded attribute counts) is over the bound."""
    payload = state.to_bytes()
    if len(payload) <= max_bytes:
        return payload
    events = state.events
    unsent = 0 if unsent_from is None else sum(1 for e in events if e.seq >= unsent_from)
    payload = _drop_oldest(state, payload, max_bytes, len(events) - max(unsent, 1), evicted, "history_bytes")
    at = len(events) - unsent  # strip the unsent events' attributes, the oldest first
    while len(payload) > max_bytes and at < len(events):
        n = max(1, (len(events) - at) * (len(payload) - max_bytes) // len(payload) + 1)
        for i in range(at, min(at + n, len(events))):
            evicted["event_attributes"] += len(events[i].attributes)
            events[i] = events[i].model_copy(update={"attributes": ()})
        at += n
        payload = state.to_bytes()
    while len(payload) > max_bytes and len(state.seen) > 1:
        keep = len(state.seen) // 2
        evicted["seen_ids_bytes"] += len(state.seen) - keep
        state.seen = SeenIds(list(state.seen)[-keep:])
        payload = state.to_bytes()
    payload = _drop_oldest(state, payload, max_bytes, len(events) - 1, evicted, "unsent_history_bytes")
    if len(payload) > max_bytes:
        raise StateTooLarge(f"user state of {state.user_id}: {len(payload)} bytes is over the bound of {max_bytes}")
    return payload


def _drop_oldest(state: UserState, payload: bytes, max_bytes: int, most: int, evicted: Evictions, what: str) -> bytes:
    """Drop up to ``most`` of the oldest kept events until the state fits; its payload."""
    while len(payload) > max_bytes and most > 0:
        # In proportion to the excess, at least one event: a few serializations at most.
        drop = min(most, len(state.events) * (len(payload) - max_bytes) // len(payload) + 1)
        del state.events[:drop]
        evicted[what] += drop
        most -= drop
        payload = state.to_bytes()
    return payload


def to_catalog_item(item: Item) -> CatalogItem:
    return CatalogItem(item.item_id, item.title, tuple(item.attributes), item.year)


def history_entries(
    events: Sequence[HistoryEvent | RatedItem], catalog: Mapping[str, Item], labels: LabelScheme
) -> list[HistoryEntry]:
    """Rated events (or a request's rated items) with a known item, as the profile prompt's H_u entries."""
    entries = []
    for e in events:
        item = catalog.get(e.item_id)
        if e.rating is not None and item is not None:
            entries.append(HistoryEntry(to_catalog_item(item), e.rating, labels.label(e.rating)))
    return entries
