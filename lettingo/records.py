"""The topic contract: one typed, validated record per topic (see DESIGN.md, "Topics and records").

Records are pydantic models so that every input can be validated at the edge with a readable reason.
They carry no Kafka or Faust types; ``streams`` maps them onto topics.

What validation guarantees, so that a record that passes can be stored and re-serialised safely:

- every float of every record is finite (``allow_inf_nan=False``): ``1e400``, ``NaN``, ``Infinity`` and the
  strings ``"inf"``, ``"Infinity"``, ``"NaN"`` are refused;
- ids (:data:`Id`) are 1..128 characters matching :data:`ID_PATTERN`, ``^[A-Za-z0-9][A-Za-z0-9._:@/+=-]*$``:
  ASCII letters and digits first, then also ``. _ : @ / + = -``. Every id this project makes or reads fits it:
  uuid hex and sha256 prefixes (profile, candidate, pair ids), MovieLens and MovieLens-100K numeric user and item
  ids, replay event ids ``<dataset>:<user>:<item>:<ts>``, the tests' ids such as ``u-dl``, ``r-u1-3``,
  ``pair-1-2``; it also admits UUIDs, URNs, e-mail-like and base64 ids. It refuses whitespace, newlines, control
  and non-ASCII characters, quotes and ids such as ``-x`` or ``../x`` that start with a separator. A generic
  JSONL dataset (or a dataset folder name) with ids outside this set has to be re-keyed before replay;
- :class:`Item` years lie in 1000..2200 (wide enough for old books, narrow enough to refuse garbage);
- :func:`decode_record`, used at the edge, also refuses duplicate JSON keys, non-UTF-8 bytes, and timestamps
  and ratings outside an :class:`InputLimits` (the deployment's settings).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lettingo.errors import InputError
from lettingo.history_ref import HistoryRefField

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]*$"
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
Text = Annotated[str, Field(max_length=16_384)]
Timestamp = Annotated[float, Field(ge=0)]


def now() -> float:
    return time.time()


def new_id() -> str:
    return uuid.uuid4().hex


class Record(BaseModel):
    # Unknown fields are ignored (producers may be newer than consumers); known ones are strictly typed.
    # Every float is finite: a NaN or infinite value would serialise as null and break whoever reads it back.
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False, allow_inf_nan=False)

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
    rating: float | None = None  # its scale is the deployment's: decode_record checks it against InputLimits
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
    year: int | None = Field(default=None, ge=1000, le=2200)
    description: Text | None = None


class RequestReason(StrEnum):
    COLD_START = "cold_start"
    DRIFT = "drift"
    MANUAL = "manual"
    MODEL_UPDATE = "model_update"


class RatedItem(Record):
    item_id: Id
    rating: float


class ProfileRequest(Record):
    user_id: Id
    reason: RequestReason
    drift_score: float = 0.0
    ts: Timestamp = Field(default_factory=now)
    attempt: int = 0
    # The history the profile must describe (deterministic replays); None (wire "") names none: the user's latest.
    history_ref: HistoryRefField = None
    caused_at: float | None = None  # wall time (epoch s) the causing interaction reached Kafka: latency's origin
    # H_u as of history_ref (the rated events the prompt shows), carried so that the profile does not depend on
    # when the request is served: by then the user's kept window may have moved past these events.
    history: list[RatedItem] = Field(default_factory=list, max_length=1024)


class CandidateText(Record):
    """A candidate profile and where it came from: what every candidate record shares, the topic's
    (:class:`ProfileCandidate`) and the offline files' (:mod:`lettingo.offline_files`)."""

    profile_id: Id
    text: Text
    generator: str
    model_version: str
    seed: int | None = None


class ProfileCandidate(CandidateText):
    user_id: Id
    history_ref: HistoryRefField  # which interactions the prompt saw
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
    history_ref: HistoryRefField = None  # the history it describes (its request's)
    # Which generator wrote the text (backend and model): a profile is model output over untrusted catalogue text.
    generator: str = ""


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


class Erasure(Record):
    """A user to forget (``lettingo users forget``): workers delete the user's state and profile, and drop every
    event of that user that reached Kafka before ``ts`` (a later one is new data)."""

    user_id: Id
    request_id: Id = Field(default_factory=new_id)
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


class RecordError(InputError):
    """A payload that is not a valid record; ``reason`` is a short label, ``str(self)`` the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class InputLimits:
    """What :func:`decode_record` accepts beyond the record's own types (built from the settings by callers).

    ``ts`` must lie in ``[ts_min, now + ts_max_ahead_s]``; an interaction's ``rating`` and a rating feedback's
    ``value`` in ``[rating_min, rating_max]``. Infinite bounds are allowed (no limit), NaN ones are not.
    """

    max_bytes: int
    ts_min: float
    ts_max_ahead_s: float
    rating_min: float
    rating_max: float

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {self.max_bytes}")
        if not (self.ts_min == self.ts_min and self.ts_max_ahead_s >= 0):  # NaN compares false
            raise ValueError(f"bad timestamp limits: ts_min={self.ts_min}, ts_max_ahead_s={self.ts_max_ahead_s}")
        if not self.rating_min <= self.rating_max:
            raise ValueError(f"bad rating scale: [{self.rating_min}, {self.rating_max}]")


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


# One decoder for every record: json.loads with a hook builds a new JSONDecoder per call (a tenth of decoding one).
_DUPLICATE_REFUSING = json.JSONDecoder(object_pairs_hook=_refuse_duplicates)


def _clip(text: str, limit: int = 60) -> str:
    """``text`` fit for a logged detail: escaped if it holds unprintable characters, at most ``limit`` long."""
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_record(
    record_type: type[R], payload: bytes | str | None, limits: InputLimits, *, now: float | None = None
) -> R:
    """Validate ``payload`` as ``record_type`` within ``limits``; raise :class:`RecordError` with a reason otherwise.

    Reasons: ``empty`` (no value), ``oversized`` (over ``limits.max_bytes``), ``invalid_json`` (not UTF-8, not
    JSON), ``duplicate_key`` (an object key written twice, at any depth), ``invalid_record`` (the record's types,
    ids and bounds), ``implausible_ts`` (a ``ts`` that is negative, not finite (``1e400``, ``NaN``, ``"inf"``,
    ``"Infinity"``) or outside ``[limits.ts_min, now + limits.ts_max_ahead_s]``; ``now`` is the wall clock by
    default),
    ``rating_out_of_scale`` (outside ``limits``' rating scale). Details are short, on one line, and quote at most
    a few dozen characters of the payload.
    """
    name = record_type.__name__
    if payload is None:
        raise RecordError("empty", "the message has no value")
    if isinstance(payload, str):
        try:
            raw = payload.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RecordError("invalid_json", f"{name}: not valid UTF-8 text at char {e.start}") from None
    else:
        raw = payload
    if len(raw) > limits.max_bytes:
        raise RecordError("oversized", f"{len(raw)} bytes is over the limit of {limits.max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError("invalid_json", f"{name}: not UTF-8 at byte {e.start}") from None
    # The duplicate-key check: pydantic's parser keeps the last of two equal keys, so parse once more with a hook.
    try:
        _DUPLICATE_REFUSING.decode(text)
    except _DuplicateKeyError as e:
        raise RecordError("duplicate_key", f"{name}: key '{_clip(e.key, 40)}' appears twice") from None
    except json.JSONDecodeError as e:
        raise RecordError("invalid_json", f"{name}: {e.msg} at char {e.pos}") from None
    except (ValueError, RecursionError) as e:  # an integer of over 4300 digits; nesting deeper than Python's stack
        raise RecordError("invalid_json", f"{name}: {type(e).__name__}: {_clip(str(e))}") from None
    try:
        record = record_type.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(first["loc"])
        if first["type"] in {"json_invalid", "json_type"}:
            kind = "invalid_json"
        elif loc == ("ts",) and first["type"] in {"finite_number", "greater_than_equal"}:
            kind = "implausible_ts"  # not a finite number (1e400, NaN, "inf"), or negative
        else:
            kind = "invalid_record"
        where = _clip(".".join(str(p) for p in loc)) + ": " if loc else ""
        raise RecordError(kind, f"{name}: {where}{_clip(first['msg'], 120)}") from None
    _check_limits(record, limits, time.time() if now is None else now)
    return record


def _check_limits(record: Record, limits: InputLimits, now: float) -> None:
    name = type(record).__name__
    ts = getattr(record, "ts", None)
    if ts is not None and not limits.ts_min <= ts <= now + limits.ts_max_ahead_s:
        raise RecordError(
            "implausible_ts",
            f"{name}: ts {ts!r} is outside [{limits.ts_min!r}, now + {limits.ts_max_ahead_s!r} s]",
        )
    field, rating = "rating", None
    if isinstance(record, Interaction):
        rating = record.rating
    elif isinstance(record, Feedback) and record.kind == "rating":
        field, rating = "value", record.value
    if rating is not None and not limits.rating_min <= rating <= limits.rating_max:
        raise RecordError(
            "rating_out_of_scale",
            f"{name}: {field} {rating!r} is outside [{limits.rating_min!r}, {limits.rating_max!r}]",
        )
