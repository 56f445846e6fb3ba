"""The worker's read check (streams.kafka.access.check_reads) on the real broker: a topic it may read passes
as soon as the broker has answered one fetch, records or none. A refused READ is tested on the secured broker
(tests/test_secure_broker.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.kafka.access import check_reads
from streams.kafka.topics import create_topics
from streams.settings import StreamSettings
from tests.streams_harness import produce

pytestmark = pytest.mark.kafka


def test_readable_topics_pass_the_read_check_without_waiting_for_records(kafka_settings: StreamSettings) -> None:
    """A fresh deployment's inputs are empty: every worker start used to wait out the fetch timeout on each
    (5 s on interactions, 5 s on profile-requests)."""
    asyncio.run(create_topics(kafka_settings))
    asyncio.run(produce(kafka_settings, [("items", "i1", b"{}")]))
    topics = [kafka_settings.topic(t) for t in ("interactions", "profile-requests", "items")]
    started = time.monotonic()
    asyncio.run(check_reads(kafka_settings, topics, timeout_s=5.0))
    assert time.monotonic() - started < 3.0
