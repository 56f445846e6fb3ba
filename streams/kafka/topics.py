"""The topic contract of DESIGN.md as code: names, keys, record types, partitions and compaction.

User-keyed topics share one partition count so that Faust tables co-partition and join locally.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from lettingo import records
from streams.kafka.access import check_connection, explain_authorization
from streams.settings import StreamSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    record: type[records.Record]
    key: str  # which record field is the message key
    compacted: bool = False
    is_input: bool = False  # written by systems outside this project: validated at the edge
    user_keyed: bool = True


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("interactions", records.Interaction, "user_id", is_input=True),
    TopicSpec("items", records.Item, "item_id", compacted=True, is_input=True, user_keyed=False),
    TopicSpec("profile-requests", records.ProfileRequest, "user_id"),
    TopicSpec("profile-candidates", records.ProfileCandidate, "user_id"),
    TopicSpec("profiles", records.Profile, "user_id", compacted=True),
    TopicSpec("impressions", records.Impression, "user_id", is_input=True),
    TopicSpec("feedback", records.Feedback, "user_id", is_input=True),
    TopicSpec("rewards", records.Reward, "user_id"),
    TopicSpec("preference-pairs", records.PreferencePair, "user_id"),
    TopicSpec("model-versions", records.ModelVersion, "name", compacted=True, user_keyed=False),
    TopicSpec("dead-letters", records.DeadLetter, "key", user_keyed=False),
    # Compacted: the latest erasure of each user stays, so a worker started later still drops the user's old events.
    TopicSpec("erasures", records.Erasure, "user_id", compacted=True),
)
BY_NAME = {t.name: t for t in TOPICS}


def partitions_of(spec: TopicSpec, settings: StreamSettings) -> int:
    # model-versions is read whole by every worker: one partition keeps its order total.
    return 1 if spec.name == "model-versions" else settings.topics.partitions


def topic_config(spec: TopicSpec) -> dict[str, str]:
    if spec.compacted:
        return {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"}
    return {"cleanup.policy": "delete"}


async def create_topics(settings: StreamSettings) -> list[tuple[str, str]]:
    """Create every topic that is missing; report each as created / exists / MISMATCH (partitions differ).

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


async def _create_missing(settings: StreamSettings, admin: AIOKafkaAdminClient) -> list[tuple[str, str]]:
    existing = await _partition_counts(admin, [settings.topic(spec.name) for spec in TOPICS])
    report: list[tuple[str, str]] = []
    missing = []
    for spec in TOPICS:
        name = settings.topic(spec.name)
        want = partitions_of(spec, settings)
        if name in existing:
            got = existing[name]
            report.append((name, "exists" if got == want else f"MISMATCH: {got} partitions, expected {want}"))
        else:
            missing.append(NewTopic(name, want, settings.topics.replication, topic_configs=topic_config(spec)))
            plural = "s" if want > 1 else ""
            compacted = ", compacted" if spec.compacted else ""
            report.append((name, f"created ({want} partition{plural}{compacted})"))
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
