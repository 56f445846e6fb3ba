"""Shared fixtures. Kafka tests talk to a real broker: the one named by LETTINGO_KAFKA_BOOTSTRAP, or the
local KRaft broker, started here once per session (and stopped again if this session started it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lettingo.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATASET = (REPO.parent / "shared" / "data" / "ml-latest-small").resolve()


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    if not (DATASET / "ratings.csv").exists():
        pytest.fail(f"the shared dataset is missing at {DATASET}")
    return DATASET


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a real, running broker."""
    from streams.kafka import broker

    settings = Settings(home=REPO / ".lettingo")
    was_running = (not settings.uses_local_broker) or broker.running_pid(broker.BrokerPaths.of(settings)) is not None
    broker.start(settings)
    yield settings.bootstrap
    if not was_running:
        broker.stop(settings)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings on the real broker with topic names unique to this test, so tests never see each other's data."""
    return Settings(
        home=tmp_path / "home",
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}-",
        app_id=f"test-{uuid.uuid4().hex[:10]}",
    )
