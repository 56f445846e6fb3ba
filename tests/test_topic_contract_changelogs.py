"""`create_topics` creates the tables' changelog topics from the contract too, so workers started together never race
Faust's own declaration of them: a worker whose metadata predates a changelog another worker just created sees it
with 0 partitions, and its agents crash in a loop on Faust's PartitionsMismatch (found by the scale-out benchmark)."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.kafka.topics import TABLES, create_topics, partitions_of
from streams.settings import StreamSettings


async def _changelogs(settings: StreamSettings) -> dict[str, tuple[int, str]]:
    admin = AIOKafkaAdminClient(**settings.kafka_client_config())
    await admin.start()
    try:
        names = [spec.changelog(settings) for spec in TABLES]
        present = sorted(set(await admin.list_topics()) & set(names))
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(present)}
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in present])
        policy = {}
        for response in configs:
            for _, _, _, name, entries in response.resources:
                policy[name] = next(value for key, value, *_ in entries if key == "cleanup.policy")
        return {n: (partitions[n], policy[n]) for n in present}
    finally:
        await admin.close()


def test_create_topics_creates_every_tables_changelog_compacted(kafka_settings: StreamSettings) -> None:
    report = dict(asyncio.run(create_topics(kafka_settings)))
    changelogs = asyncio.run(_changelogs(kafka_settings))
    for spec in TABLES:
        name = spec.changelog(kafka_settings)
        assert changelogs.get(name) == (partitions_of(spec, kafka_settings), "compact"), name
        assert report[name].startswith("created"), report[name]
