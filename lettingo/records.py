"""The topic contract: one typed, validated record per topic (see DESIGN.md, "Topics and records").

Records are pydantic models so that every input can be validated at the edge with a readable reason.
They carry no Kafka or Faust types; ``streams`` maps them onto topics.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Annotated, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Id = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(max_length=16_384)]
Timestamp = Annotated[float, Field(ge=0)]


def now() -> float:
    return time.time()


def new_id() -> str:
    return uuid.uuid4().hex


class Record(BaseModel):
    # Unknown fields are ignored (producers may be newer than consumers); known ones are strictly typed.
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, payload: bytes | str) -> Self:
        return cls.model_validate_json(payload)


class InteractionKind(StrEnum):
    RATING = "rating"
    CLICK = "click"
    VIEW = "view"
    PURCHASE = "purchase"


class Interaction(Record):
    event_id: Id
    user_id: Id
    item_id: Id
    kind: InteractionKind
    rating: float | None = Field(default=None, ge=0, le=10)
    ts: Timestamp
    text: Text | None = None

    @model_validator(mode="after")
    def _rating_needs_value(self) -> Interaction:
        if self.kind is InteractionKind.RATING and self.rating is None:
            raise ValueError("a rating interaction needs a 'rating' value")
        return self


class Item(Record):
    item_id: Id
    title: Annotated[str, Field(min_length=1, max_length=512)]
    attributes: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=64)
    year: int | None = None
    description: Text | None = None


class RequestReason(StrEnum):
    COLD_START = "cold_start"
    DRIFT = "drift"
    MANUAL = "manual"
    MODEL_UPDATE = "model_update"


class ProfileRequest(Record):
    user_id: Id
    reason: RequestReason
    drift_score: float = 0.0
    ts: Timestamp = Field(default_factory=now)
    attempt: int = 0
    history_ref: str = ""  # the history the profile must describe: "<count>@<last event id>" (deterministic replays)


class ProfileCandidate(Record):
    profile_id: Id
    user_id: Id
    text: Text
    generator: str
    model_version: str
    history_ref: str  # which interactions the prompt saw: "<count>@<last event id>"
    seed: int | None = None
    prompt: Text = ""  # the generation prompt over H_u: a preference pair's prompt is this text
    ts: Timestamp = Field(default_factory=now)


class Profile(Record):
    user_id: Id
    profile_id: Id
    version: int = Field(ge=1)
    text: Text
    model_version: str
    reason: RequestReason
    ts: Timestamp = Field(default_factory=now)
    history_ref: str = ""  # the history it describes: "<count>@<last event id>" (its request's)


class Impression(Record):
    request_id: Id
    user_id: Id
    profile_id: Id
    item_ids: list[Id] = Field(min_length=1, max_length=1000)
    ts: Timestamp


class Feedback(Record):
    request_id: Id
    user_id: Id
    item_id: Id
    kind: Literal["click", "rating", "purchase", "dismiss"]
    value: float = 1.0
    ts: Timestamp


class RewardSource(StrEnum):
    TASK_EVAL = "task_eval"
    CLICK = "click"


class Reward(Record):
    user_id: Id
    profile_id: Id
    source: RewardSource
    target: str  # the item (or request) the reward is about
    predicted: str | None = None
    actual: str | None = None
    correct: bool
    value: float
    model_version: str = ""
    ts: Timestamp = Field(default_factory=now)


class PreferencePair(Record):
    pair_id: Id
    user_id: Id
    prompt: Text
    chosen: Text
    rejected: Text
    chosen_reward: float
    rejected_reward: float
    chosen_profile_id: Id
    rejected_profile_id: Id
    policy_version: str
    ts: Timestamp = Field(default_factory=now)


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    CHAMPION = "champion"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"


class ModelVersion(Record):
    name: Id
    version: int = Field(ge=0)
    kind: Literal["lora", "full"]
    uri: str
    sha256: dict[str, str]
    base_model: str
    parent: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    gate: dict[str, object] = Field(default_factory=dict)
    status: ModelStatus
    ts: Timestamp = Field(default_factory=now)


class DeadLetter(Record):
    topic: str
    partition: int
    offset: int
    error: str
    reason: str  # a short machine-readable class of error, used as a metric label
    payload: str  # the original bytes, decoded as UTF-8 with replacement
    key: str | None = None
    ts: Timestamp = Field(default_factory=now)


class RecordError(ValueError):
    """A payload that is not a valid record; ``reason`` is a short label, ``str(self)`` the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


R = TypeVar("R", bound=Record)


def decode_record(record_type: type[R], payload: bytes | str | None, max_bytes: int) -> R:
    """Validate ``payload`` as ``record_type``; raise :class:`RecordError` with a reason otherwise."""
    if payload is None:
        raise RecordError("empty", "the message has no value")
    if len(payload) > max_bytes:
        raise RecordError("oversized", f"{len(payload)} bytes is over the limit of {max_bytes}")
    try:
        return record_type.from_bytes(payload)
    except ValidationError as e:
        first = e.errors()[0]
        kind = "invalid_json" if first["type"] in {"json_invalid", "json_type"} else "invalid_record"
        where = ".".join(str(p) for p in first["loc"]) or record_type.__name__
        raise RecordError(kind, f"{record_type.__name__}: {where}: {first['msg']}") from e
