"""The worker's tables: RocksDB locally, a compacted changelog topic each, keyed by user id (raw bytes).

Values are JSON bytes of pydantic models (``lettingo.user_state.UserState`` and friends); the stores never see
Faust's codecs, so a table's changelog is readable with a plain consumer.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import faust
from faust.streams import _current_event
from pydantic import BaseModel, Field

from lettingo.records import Profile
from streams.app import app, settings

M = TypeVar("M", bound=BaseModel)


def raw_table(name: str, help_: str) -> faust.Table:
    return app.Table(
        name,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        help=help_,
    )


user_state = raw_table("user_state", "user id -> lettingo.user_state.UserState")
profiles = raw_table("profiles", "user id -> ProfileHistory: the serving profile and its earlier versions")
scoreboard = raw_table("scoreboard", "user id -> lettingo.scoreboard.Scoreboard: explored candidates and rewards")
pending_join = raw_table("pending_join", "user id -> lettingo.feedback_join.PendingJoin")
# "<topic>:<partition>" -> the last offset of that input partition ingest applied (streams.applied).
applied_offsets = raw_table("applied_offsets", "input topic:partition -> last applied offset (streams.applied)")
ALL_TABLES = {"user_state": user_state, "profiles": profiles, "scoreboard": scoreboard, "pending_join": pending_join,
              "applied_offsets": applied_offsets}  # fmt: skip

MAX_PROFILE_VERSIONS = 20


class ProfileVersion(BaseModel):
    version: int
    profile_id: str
    model_version: str
    reason: str
    history_ref: str
    ts: float


class ProfileHistory(BaseModel):
    current: Profile
    history_ref: str
    versions: list[ProfileVersion] = Field(default_factory=list)  # newest last, bounded

    @property
    def seq(self) -> int:
        return int(self.history_ref.split("@", 1)[0]) if self.history_ref else 0


def key(user_id: str) -> bytes:
    return user_id.encode()


def load(table: faust.Table, user_id: str, model: type[M]) -> M | None:
    payload = table.get(key(user_id))
    return model.model_validate_json(payload) if payload else None


def store(table: faust.Table, user_id: str, value: BaseModel) -> None:
    table[key(user_id)] = value.model_dump_json().encode()


@contextmanager
def event_context(event: faust.EventT) -> Iterator[None]:
    """Make ``event`` the current one while writing a table from a batch.

    Faust's RocksDB store files a write under the *current* event's partition; in a batch taken with
    ``take_events`` that is the last event's, which may be another partition than this key's.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
