"""The worker's tables: RocksDB locally, a compacted changelog topic each, keyed by user id (raw bytes), declared
on a worker's app by :func:`build_tables` from the contract's :data:`streams.kafka.topics.TABLES`.

Values are JSON bytes of pydantic models (``lettingo.user_state.UserState`` and friends); the stores never see
Faust's codecs, so a table's changelog is readable with a plain consumer.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import faust
from faust.types import TableT
from pydantic import BaseModel

from lettingo.errors import InputError
from streams.faust_adapter import RocksDBMemory, current_event, share_rocksdb_memory
from streams.kafka.topics import TABLES, TableSpec, partitions_of
from streams.settings import StreamSettings

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

# Changelog records a standby table partition buffers before writing them to RocksDB. Faust keeps a standby's
# events in one buffer per table and writes it only once it holds this many (no timer flushes it): at the
# restore's batch (1,000) a table written a few times a minute held minutes of events, then wrote them in one
# large write batch, a transient peak that raised the worker's malloc arenas in steps of 15-70 MB
# (``python -m bench.memory_probe``). Standbys are written as the changes come, so a small batch costs little.
STANDBY_BUFFER = 20


def table_options(settings: StreamSettings) -> dict[str, Any]:
    """Keyword arguments of every ``app.Table``: the restore batch, the standby batch (:data:`STANDBY_BUFFER`) and
    the memtables of each table partition's database (``options`` reach
    :class:`faust.stores.rocksdb.RocksDBOptions`; Faust's defaults, 3 x 64 MiB memtables per database, grow a worker
    by GiBs over its many databases). The block cache is the worker's (:func:`rocksdb_memory`)."""
    app = settings.app
    return {
        "recovery_buffer_size": app.recovery_buffer,
        "standby_buffer_size": min(app.recovery_buffer, STANDBY_BUFFER),
        "options": {
            "write_buffer_size": app.rocksdb_write_buffer_mib * 2**20,
            "max_write_buffer_number": app.rocksdb_write_buffers,
        },
    }


def rocksdb_memory(settings: StreamSettings) -> RocksDBMemory:
    """The block cache and memtable budget every database of one worker shares."""
    app = settings.app
    return RocksDBMemory(app.rocksdb_block_cache_mib * 2**20, app.rocksdb_memtables_mib * 2**20)


def raw_table(app: faust.App, settings: StreamSettings, spec: TableSpec, memory: RocksDBMemory) -> TableT:
    table = app.Table(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        partitions=partitions_of(spec, settings),
        help=spec.help,
        **table_options(settings),  # restore batch and memtable sizes
    )
    share_rocksdb_memory(table, memory)
    return table


@dataclass(frozen=True)
class Tables:
    """Every table of the contract (:data:`streams.kafka.topics.TABLES`), a field each under the table's name:
    :func:`build_tables` fails if a field and the contract differ."""

    user_state: TableT
    profiles: TableT
    scoreboard: TableT
    pending_join: TableT
    applied_offsets: TableT

    def all(self) -> dict[str, TableT]:
        return {spec.name: getattr(self, spec.name) for spec in TABLES}

    def user_keyed(self) -> list[TableT]:
        """The tables an erasure deletes a user's key from."""
        return [getattr(self, spec.name) for spec in TABLES if spec.user_keyed]


def build_tables(app: faust.App, settings: StreamSettings, memory: RocksDBMemory) -> Tables:
    tables = {spec.name: raw_table(app, settings, spec, memory) for spec in TABLES}
    for spec in TABLES:
        # create_topics makes the changelogs under the contract's names before Faust starts: they must be Faust's.
        faust_name = tables[spec.name].changelog_topic.get_topic_name()
        if faust_name != spec.changelog(settings):
            raise RuntimeError(
                f"Faust names {spec.name}'s changelog {faust_name}, the contract {spec.changelog(settings)}"
            )
    return Tables(**tables)


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
