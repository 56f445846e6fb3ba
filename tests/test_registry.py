"""The model registry: atomic publication, monotonic versions, verification, champion pointer, remote roots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lettingo.records import ModelStatus
from lettingo.registry import (
    CorruptArtifactError,
    ManifestDraft,
    ModelRegistry,
    RegistryError,
    VersionNotFoundError,
)
from lettingo.registry import files as registry_files


def make_artifact(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights-" + marker.encode() * 100)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "marker": marker}))
    (folder / "tokenizer").mkdir(exist_ok=True)
    (folder / "tokenizer" / "tokenizer.json").write_text('{"vocab": {}}')
    return folder


def draft(parent: int | None = None, status: ModelStatus = ModelStatus.CANDIDATE) -> ManifestDraft:
    return ManifestDraft(
        kind="lora",
        base_model="/models/nano",
        adapter_config={"r": 4},
        training_config={"beta": 0.1},
        data_lineage={"pairs": 10, "rejected": {"identical": 1}},
        metrics={"train_loss": 0.6},
        gate={"passed": True},
        parent=parent,
        library_versions={"trl": "1.16.0"},
        status=status,
    )


def test_publish_numbers_versions_and_writes_a_full_manifest(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    first = registry.publish(make_artifact(tmp_path / "a", "a"), draft())
    second = registry.publish(make_artifact(tmp_path / "b", "b"), draft(parent=1))

    assert (first.version, second.version) == (1, 2)
    assert registry.versions() == [1, 2]
    manifest = registry.manifest(2)
    assert manifest.parent == 1
    assert set(manifest.files) == {"adapter_model.safetensors", "adapter_config.json", "tokenizer/tokenizer.json"}
    assert manifest.data_lineage["rejected"] == {"identical": 1}
    assert registry.status(2) is ModelStatus.CANDIDATE
    assert registry.verify(2) == manifest


def test_a_crash_while_publishing_leaves_no_half_version_and_numbers_stay_monotonic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    registry.publish(make_artifact(tmp_path / "a", "a"), draft())

    real_copy = registry_files._copy_file
    copied: list[Path] = []

    def copy_then_crash(source: Path, target: Path) -> None:
        if copied:  # the first file lands, the second one "crashes the process"
            raise OSError("disk full (simulated crash)")
        real_copy(source, target)
        copied.append(target)

    monkeypatch.setattr(registry_files, "_copy_file", copy_then_crash)
    with pytest.raises(OSError, match="simulated crash"):
        registry.publish(make_artifact(tmp_path / "b", "b"), draft(parent=1))
    assert copied, "the crash must happen after some files were written"
    monkeypatch.setattr(registry_files, "_copy_file", real_copy)

    assert registry.versions() == [1]
    assert not (Path(registry.model_dir) / "v000002").exists()
    assert registry.publish(make_artifact(tmp_path / "c", "c"), draft(parent=1)).version == 2


def test_a_leftover_staging_folder_after_a_hard_kill_is_invisible_and_its_number_is_not_reused(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    registry.publish(make_artifact(tmp_path / "a", "a"), draft())
    leftover = Path(registry.model_dir) / ".tmp-v000002-deadbeef"
    make_artifact(leftover, "half")  # what a kill -9 in the middle of publishing leaves behind

    assert registry.versions() == [1]
    assert registry.publish(make_artifact(tmp_path / "b", "b"), draft()).version == 3


def test_a_corrupted_artifact_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    registry.publish(make_artifact(tmp_path / "a", "a"), draft())
    weights = Path(registry.model_dir) / "v000001" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"X")

    with pytest.raises(CorruptArtifactError, match=r"v1 .*corrupted.*'adapter_model.safetensors' has sha256"):
        registry.verify(1)
    with pytest.raises(CorruptArtifactError):
        registry.local_path(1)
    with pytest.raises(CorruptArtifactError):
        registry.promote(1)


def test_missing_and_unexpected_files_are_reported(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    registry.publish(make_artifact(tmp_path / "a", "a"), draft())
    folder = Path(registry.model_dir) / "v000001"
    (folder / "adapter_config.json").unlink()
    (folder / "extra.bin").write_bytes(b"?")

    with pytest.raises(
        CorruptArtifactError, match=r"missing file 'adapter_config\.json'.*unexpected file 'extra\.bin'"
    ):
        registry.verify(1)


def test_promote_and_rollback_move_the_champion_pointer(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    for marker in "abc":
        registry.publish(make_artifact(tmp_path / marker, marker), draft())
    assert registry.champion() is None
    with pytest.raises(VersionNotFoundError):
        registry.local_path()

    registry.promote(1)
    registry.promote(3)
    assert registry.champion() == 3
    assert registry.local_path() == Path(registry.model_dir) / "v000003"
    assert registry.model_version_record(3).status is ModelStatus.CHAMPION

    assert registry.rollback() == 1
    assert registry.status(3) is ModelStatus.ROLLED_BACK
    assert registry.status(1) is ModelStatus.CHAMPION
    assert registry.rollback() is None
    with pytest.raises(VersionNotFoundError, match="no champion to roll back"):
        registry.rollback()

    registry.promote(3)  # promoting again clears the rolled-back mark
    assert registry.status(3) is ModelStatus.CHAMPION


def test_a_refused_version_is_kept_but_needs_force_to_promote(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    registry.publish(make_artifact(tmp_path / "a", "a"), draft(status=ModelStatus.REFUSED))
    assert registry.status(1) is ModelStatus.REFUSED
    with pytest.raises(RegistryError, match="refused by the gate"):
        registry.promote(1)
    registry.promote(1, force=True)
    assert registry.champion() == 1


def test_a_remote_root_downloads_verified_copies_into_the_cache(tmp_path: Path) -> None:
    registry = ModelRegistry("memory://lettingo-test-registry", cache_dir=tmp_path / "cache")
    try:
        registry.publish(make_artifact(tmp_path / "a", "a"), draft())
        registry.publish(make_artifact(tmp_path / "b", "b"), draft(parent=1))
        registry.promote(2)
        assert registry.uri(2).startswith("memory://")

        local = registry.local_path()
        assert local.is_relative_to(tmp_path / "cache")
        assert json.loads((local / "adapter_config.json").read_text())["marker"] == "b"
        assert registry.local_path() == local  # served from the cache the second time

        registry.fs.pipe_file(f"{registry.model_dir}/v000001/adapter_config.json", b"{}")
        with pytest.raises(CorruptArtifactError, match="v1"):
            registry.local_path(1)
    finally:
        registry.fs.rm(registry.model_dir, recursive=True)


def test_an_unknown_version_is_a_clear_error(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    with pytest.raises(VersionNotFoundError, match="no version 7"):
        registry.manifest(7)
