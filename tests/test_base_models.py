"""Base models in the registry (issue 19, item 1): content-addressed and checksummed, named by ``base:<id>`` in
every manifest, so a registry copied to another folder, or read from an fsspec URL, still loads and verifies
the model versions trained on them, with the original model folder gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec
import pytest

from lettingo.records import ModelStatus
from lettingo.registry import BaseModelStore, CorruptArtifactError, ModelRegistry, RegistryError, content_id
from lettingo.registry.importing import import_base_model
from lettingo.serving import ModelRefusedError, PolicyHolder
from trainer.config import DPORoundConfig
from trainer.data import PairReport
from trainer.pipeline import run_round
from trainer.policy import adapter_base_model, current_policy
from trainer.tiny_model import build_tiny_policy, synthetic_pairs


def test_a_base_model_is_content_addressed_and_imported_once(tmp_path: Path) -> None:
    source = build_tiny_policy(tmp_path / "tiny")
    store = BaseModelStore(tmp_path / "registry", cache_dir=tmp_path / "cache")
    first = import_base_model(source, store, name="tiny")
    assert first.ref == f"base:{first.id}" and first.id == content_id(first.files)
    assert store.ids() == [first.id] and "config.json" in first.files
    assert import_base_model(build_tiny_policy(tmp_path / "again"), store).id == first.id  # same content, same id
    assert import_base_model(build_tiny_policy(tmp_path / "other", seed=1), store).id != first.id
    weights = store.local_path(first.id) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"oops")
    with pytest.raises(CorruptArtifactError, match=rf"base model {first.id}.*corrupted.*model.safetensors"):
        store.local_path(first.id)
    with pytest.raises(RegistryError, match="neither base:<id> nor a local model folder"):
        store.add(tmp_path / "nowhere")
    with pytest.raises(RegistryError, match="holds the registry's base models"):
        ModelRegistry(tmp_path / "registry", "base-models")


def _trained_registry(tmp_path: Path) -> tuple[ModelRegistry, Path]:
    """A LoRA round on a tiny base model, published and promoted, then the base model's folder deleted."""
    base = build_tiny_policy(tmp_path / "models" / "tiny")
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    config = DPORoundConfig(epochs=1, batch_size=8, max_length=64, lora_r=4, lora_alpha=8, min_pairs=4)
    outcome = run_round(
        synthetic_pairs(24, seed=1), PairReport(received=24), registry, config, tmp_path / "work", base_model=str(base)
    )
    if not outcome.promoted:
        registry.promote(outcome.manifest.version, force=True)
    shutil.rmtree(tmp_path / "models")
    return registry, base


def test_a_registry_copied_elsewhere_loads_and_verifies_there(tmp_path: Path) -> None:
    registry, base = _trained_registry(tmp_path / "machine-a")
    manifest = registry.manifest(1)
    assert manifest.base_model.startswith("base:") and str(base) not in manifest.model_dump_json()

    copied = tmp_path / "machine-b" / "registry"
    shutil.copytree(registry.root, copied)
    shutil.rmtree(tmp_path / "machine-a")  # nothing of the first machine is left
    there = ModelRegistry(copied, cache_dir=tmp_path / "machine-b" / "cache")
    assert there.verify(1) == manifest
    assert there.base_model_path(manifest.base_model).is_relative_to(copied)

    record = there.model_version_record(1)
    loaded = PolicyHolder.from_spec("writer:combined").switch_to(record)  # checksums, base model, smoke test
    assert loaded.version == "profile-generator:1" and loaded.generator.name == "hf"
    assert Path(adapter_base_model(there.local_path(1))).is_relative_to(copied)
    policy = current_policy(there, base_model=None)  # the next round starts there too
    assert policy.kind == "lora" and policy.base_ref == manifest.base_model

    weights = there.base_model_path(manifest.base_model) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"oops")
    with pytest.raises(ModelRefusedError) as refused:
        PolicyHolder.from_spec("writer:combined").switch_to(record)
    assert refused.value.reason == "base_model" and "corrupted" in str(refused.value)


def test_a_registry_on_an_fsspec_url_loads_through_the_verified_cache(tmp_path: Path) -> None:
    registry, _ = _trained_registry(tmp_path / "machine-a")
    url = "memory://lettingo-base-models-test/registry"
    fs = fsspec.filesystem("memory")
    fs.put(str(registry.root), url, recursive=True)
    try:
        remote = ModelRegistry(url, cache_dir=tmp_path / "cache")
        record = remote.model_version_record(1)
        assert record.uri.startswith("memory://") and record.status is ModelStatus.CHAMPION
        shutil.rmtree(tmp_path / "machine-a")
        loaded = PolicyHolder.from_spec("writer:combined").switch_to(record)
        assert loaded.version == "profile-generator:1"
        base = remote.base_model_path(remote.manifest(1).base_model)
        assert base.is_relative_to(tmp_path / "cache")  # downloaded once, verified
    finally:
        fs.rm("memory://lettingo-base-models-test", recursive=True)
