"""The worker's tables: RocksDB locally, a compacted changelog topic each, keyed by user id (raw bytes).

Values are JSON bytes of pydantic models (``lettingo.user_state.UserState`` and friends); the stores never see
Faust's codecs, so a table's changelog is readable with a plain consumer.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import TypeVar

import faust
from faust.types import TableT
from pydantic import BaseModel, Field

from lettingo.errors import InputError
from lettingo.records import Profile
from streams.app import app, settings, table_options
from streams.faust_adapter import current_event

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)


def raw_table(name: str, help_: str) -> TableT:
    return app.Table(
        name,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topics.partitions,
        help=help_,
        **table_options(settings),  # restore batch and bounded RocksDB memory
    )


user_state = raw_table("user_state", "user id -> lettingo.user_state.UserState")
profiles = raw_table("profiles", "user id -> ProfileHistory: the serving profile and its earlier versions")
scoreboard = raw_table("scoreboard", "user id -> lettingo.scoreboard.Scoreboard: explored candidates and rewards")
pending_join = raw_table("pending_join", "user id -> lettingo.feedback_join.PendingJoin")
# "<topic>:<partition>" -> the last offset of that input partition ingest applied (streams.applied).
applied_offsets = raw_table("applied_offsets", "input topic:partition -> last applied offset (streams.applied)")
ALL_TABLES = {
    "user_state": user_state,
    "profiles": profiles,
    "scoreboard": scoreboard,
    "pending_join": pending_join,
    "applied_offsets": applied_offsets,
}

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


class CorruptValue(InputError):
    """A stored table value that no longer decodes (written by another version, or damaged)."""

    def __init__(self, table: TableT, user_id: str, payload: bytes, error: Exception) -> None:
        super().__init__(f"{table.name}[{user_id!r}]: {type(error).__name__}: {str(error)[:300]}")
        self.table, self.user_id, self.payload = table, user_id, payload


def load(table: TableT, user_id: str, model: type[M]) -> M | None:
    """The user's value, None if there is none; :class:`CorruptValue` if it does not decode. Only the agent that
    owns the table handles that (:func:`streams.quarantine.load_owned`); readers use :func:`read`."""
    payload = table.get(key(user_id))
    if not payload:
        return None
    try:
        return model.model_validate_json(payload)
    except ValueError as e:
        raise CorruptValue(table, user_id, payload, e) from e


def read(table: TableT, user_id: str, model: type[M]) -> M | None:
    """As :func:`load` for a reader that does not own the table: a value that does not decode reads as none (the
    owner quarantines it on its next event for the user)."""
    try:
        return load(table, user_id, model)
    except CorruptValue as e:
        log.warning("unreadable table value, read as none: %s", e)
        return None


def store(table: TableT, user_id: str, value: BaseModel) -> None:
    table[key(user_id)] = value.model_dump_json().encode()


def event_context(event: faust.EventT) -> AbstractContextManager[None]:
    """Make ``event`` the current one while writing a table from a batch, so that the write is filed under the
    event's partition (:func:`streams.faust_adapter.current_event`)."""
    return current_event(event)
