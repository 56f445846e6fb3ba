"""The topic contract of DESIGN.md as code: every topic a worker reads or writes (the external contract's, the
worker's internal ones and its tables' changelogs), with its record type, key, partitioning and compaction.

Everything else derives from here: :func:`create_topics`, the worker's Faust topics (:mod:`streams.faust_topics`),
its tables (:mod:`streams.tables`), the ACLs (:mod:`streams.kafka.acls`) and what an erasure deletes
(:mod:`streams.agents.erasures`). Decoding binds to the topic: :meth:`TopicSpec.decode` validates a payload as the
topic's own record type. User-keyed topics and tables share one partition count so that Faust tables
co-partition and join locally.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from pydantic import BaseModel

from lettingo import records
from lettingo.feedback_join import PendingJoin
from lettingo.regeneration import ProfileHistory
from lettingo.scoreboard import Scoreboard
from lettingo.stream_eval import EvalTrigger
from lettingo.user_state import UserState
from streams.kafka.access import check_connection, explain_authorization
from streams.settings import StreamSettings

R = TypeVar("R", bound=BaseModel)


class Partitioning(StrEnum):
    SHARED = "shared"  # settings.topics.partitions, the same for every user-keyed topic and table
    SINGLE = "single"  # one partition: read whole by every worker, its order total


@dataclass(frozen=True)
class TopicSpec(Generic[R]):
    name: str
    record: type[R] | None  # None: the value carries no record (a wake-up call)
    key: str  # which record field is the message key ("" for a topic whose key is all it carries)
    compacted: bool = False
    is_input: bool = False  # written by systems outside this project: validated at the edge
    user_keyed: bool = True
    internal: bool = False  # written and read by the workers only
    partitioning: Partitioning = Partitioning.SHARED

    def decode(self, payload: bytes | str | None, limits: records.InputLimits) -> R:
        """``payload`` as this topic's record; :class:`lettingo.records.RecordError` (with a reason) otherwise."""
        if self.record is None:
            raise TypeError(f"{self.name} carries no record to decode")
        if issubclass(self.record, records.Record):
            return records.decode_record(self.record, payload, limits)
        try:
            return self.record.model_validate_json(payload or b"")
        except ValueError as e:
            raise records.RecordError("invalid_record", str(e)[:300]) from e


INTERACTIONS = TopicSpec("interactions", records.Interaction, "user_id", is_input=True)
ITEMS = TopicSpec("items", records.Item, "item_id", compacted=True, is_input=True, user_keyed=False)
PROFILE_REQUESTS = TopicSpec("profile-requests", records.ProfileRequest, "user_id")
PROFILE_CANDIDATES = TopicSpec("profile-candidates", records.ProfileCandidate, "user_id")
PROFILES = TopicSpec("profiles", records.Profile, "user_id", compacted=True)
IMPRESSIONS = TopicSpec("impressions", records.Impression, "user_id", is_input=True)
FEEDBACK = TopicSpec("feedback", records.Feedback, "user_id", is_input=True)
REWARDS = TopicSpec("rewards", records.Reward, "user_id")
PREFERENCE_PAIRS = TopicSpec("preference-pairs", records.PreferencePair, "user_id")
MODEL_VERSIONS = TopicSpec(
    "model-versions", records.ModelVersion, "name", compacted=True, user_keyed=False, partitioning=Partitioning.SINGLE
)
DEAD_LETTERS = TopicSpec("dead-letters", records.DeadLetter, "key", user_keyed=False)
# Compacted: the latest erasure of each user stays, so a worker started later still drops the user's old events.
ERASURES = TopicSpec("erasures", records.Erasure, "user_id", compacted=True)
# The contract with the systems around the workers: the topics of DESIGN.md.
TOPICS: tuple[TopicSpec[Any], ...] = (
    INTERACTIONS,
    ITEMS,
    PROFILE_REQUESTS,
    PROFILE_CANDIDATES,
    PROFILES,
    IMPRESSIONS,
    FEEDBACK,
    REWARDS,
    PREFERENCE_PAIRS,
    MODEL_VERSIONS,
    DEAD_LETTERS,
    ERASURES,
)

# The workers' own topics, co-partitioned with the user-keyed ones. Task evaluation's input: ingest's newly applied
# rated events and the scoreboard's newly opened candidates (``interactions`` has one consumer, ingest).
RATED_EVENTS = TopicSpec("rated-events", EvalTrigger, "user_id", internal=True)
# The feedback join's timer wakes a user's join with an empty message keyed by the user id.
FEEDBACK_SWEEPS: TopicSpec[BaseModel] = TopicSpec("feedback-sweeps", None, "", internal=True)
INTERNAL_TOPICS: tuple[TopicSpec[Any], ...] = (RATED_EVENTS, FEEDBACK_SWEEPS)

ALL_TOPICS = TOPICS + INTERNAL_TOPICS
BY_NAME = {t.name: t for t in ALL_TOPICS}


@dataclass(frozen=True)
class TableSpec:
    """A worker table: RocksDB locally, a compacted changelog topic (created by :func:`create_topics`, as Faust
    would declare it) with the partitions given here. Keys are raw bytes; values are the JSON bytes of ``value``
    (None: a plain string, as the applied offsets)."""

    name: str
    key: str  # what a key is
    value: type[BaseModel] | None
    about: str = ""
    user_keyed: bool = True  # an erasure deletes the user's key
    partitioning: Partitioning = Partitioning.SHARED
    compacted: bool = True  # a changelog keeps each key's latest value

    def changelog(self, settings: StreamSettings) -> str:
        """The changelog topic's name (Faust's ``<app id>-<table>-changelog``)."""
        return f"{settings.app.id}-{self.name}-changelog"

    @property
    def help(self) -> str:
        value = f"{self.value.__module__}.{self.value.__qualname__}" if self.value else "str"
        return f"{self.key} -> {value}" + (f": {self.about}" if self.about else "")


USER_STATE = TableSpec("user_state", "user id", UserState)
PROFILE_HISTORY = TableSpec("profiles", "user id", ProfileHistory, "the serving profile and its earlier versions")
SCOREBOARD = TableSpec("scoreboard", "user id", Scoreboard, "explored candidates and rewards")
PENDING_JOIN = TableSpec("pending_join", "user id", PendingJoin)
APPLIED_OFFSETS = TableSpec(
    "applied_offsets", "input topic:partition", None, "the last applied offset (streams.applied)", user_keyed=False
)
TABLES: tuple[TableSpec, ...] = (USER_STATE, PROFILE_HISTORY, SCOREBOARD, PENDING_JOIN, APPLIED_OFFSETS)


def partitions_of(spec: TopicSpec[Any] | TableSpec, settings: StreamSettings) -> int:
    return 1 if spec.partitioning is Partitioning.SINGLE else settings.topics.partitions


async def create_topics(settings: StreamSettings) -> list[tuple[str, str]]:
    """Create every topic a worker needs that is missing (:func:`wanted_topics`); report each as created / exists
    / MISMATCH (partitions differ).

    A client Kafka does not accept, or one whose ACLs do not allow creating and describing the topics, gets a
    :class:`streams.kafka.access.KafkaAccessError` that says so in one line."""
    await check_connection(settings)
    admin = AIOKafkaAdminClient(**settings.kafka_client_config())
    await admin.start()
    try:
        return await _create_missing(settings, admin)
    except KafkaError as e:
        refused = explain_authorization(e, settings, "creating the topics")
        if refused is None:
            raise
        raise refused from e
    finally:
        await admin.close()


def wanted_topics(settings: StreamSettings) -> list[tuple[str, int, bool]]:
    """(name, partitions, compacted) of every topic a worker needs: the contract's, the internal ones and the tables'
    changelogs. The changelogs are created here, not left to Faust: a worker whose metadata predates a changelog that
    another worker's Faust just declared sees it with 0 partitions, and its agents fail on PartitionsMismatch."""
    topics = [(settings.topic(spec.name), partitions_of(spec, settings), spec.compacted) for spec in ALL_TOPICS]
    changelogs = [(spec.changelog(settings), partitions_of(spec, settings), spec.compacted) for spec in TABLES]
    return topics + changelogs


def _config(compacted: bool) -> dict[str, str]:
    if compacted:
        return {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"}
    return {"cleanup.policy": "delete"}


async def _create_missing(settings: StreamSettings, admin: AIOKafkaAdminClient) -> list[tuple[str, str]]:
    wanted = wanted_topics(settings)
    existing = await _partition_counts(admin, [name for name, _, _ in wanted])
    report: list[tuple[str, str]] = []
    missing = []
    for name, want, compacted in wanted:
        if name in existing:
            got = existing[name]
            report.append((name, "exists" if got == want else f"MISMATCH: {got} partitions, expected {want}"))
        else:
            missing.append(NewTopic(name, want, settings.topics.replication, topic_configs=_config(compacted)))
            plural = "s" if want > 1 else ""
            report.append((name, f"created ({want} partition{plural}{', compacted' if compacted else ''})"))
    if missing:
        response = await admin.create_topics(missing)
        for name, code, *_ in response.topic_errors:
            # 36 TOPIC_ALREADY_EXISTS: created concurrently by another process, which is fine
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"creating topic {name} failed")
    await _wait_until_visible(admin, [t.name for t in missing])
    return report


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partitions of each named topic that exists. Only names known to exist are described, so a broker that
    auto-creates topics never creates one here; describing every topic would cost the broker time in proportion
    to all the topics it holds."""
    present = set(await admin.list_topics()) & set(names)
    return await _described(admin, sorted(present)) if present else {}


async def _described(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names) if t["error_code"] == 0}


async def _wait_until_visible(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while names and loop.time() < deadline:
        counts = await _described(admin, names)  # just created, so describing them creates nothing
        if all(counts.get(n) for n in names):
            return
        await asyncio.sleep(0.2)


async def delete_run_topics(settings: StreamSettings) -> list[str]:
    """Delete every topic of one run (its topic prefix, and its app id's changelogs): a test's or a benchmark's."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_config())
    await admin.start()
    try:
        doomed = sorted(t for t in await admin.list_topics() if t.startswith((settings.topics.prefix, settings.app.id)))
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()
