"""A model registry under a root that is a local folder or any fsspec URL (``memory://``, ``s3://``, ...).

Layout: ``<root>/<name>/v000001/`` (model files, ``manifest.json`` written last) and ``<root>/<name>/state.json``
(champion history). Locally a version is staged in a hidden ``.tmp-*`` folder and renamed into place, which is
atomic; on object stores the files are uploaded first and the manifest last, and a folder without a manifest is
never listed. Version numbers only grow: a crashed attempt's number is never reused. One writer per model name
is assumed on remote roots (locally a lock file serialises writers).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from lettingo.records import ModelStatus, ModelVersion
from lettingo.registry.base_models import BASE_FOLDER, BaseModelStore, is_ref
from lettingo.registry.errors import CorruptArtifactError, RegistryError, VersionNotFoundError
from lettingo.registry.files import DEFAULT_CACHE_DIR, FolderStore, fsync_dir, write_durably
from lettingo.registry.manifest import (
    Manifest,
    ManifestDraft,
    hash_folder,
    parse_version_folder,
    version_folder_name,
)
from lettingo.registry.state import STATE_NAME, RegistryState

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "profile-generator"


class ModelRegistry:
    def __init__(self, root: str | Path, name: str = DEFAULT_MODEL_NAME, cache_dir: Path | None = None) -> None:
        if name == BASE_FOLDER:
            raise RegistryError(f"{BASE_FOLDER!r} holds the registry's base models; name the model otherwise")
        self.cache_dir = cache_dir or DEFAULT_CACHE_DIR
        self.files = FolderStore(root, name, self.cache_dir)
        self.fs, self.is_local = self.files.fs, self.files.is_local
        self.root = str(root)
        self.name = name
        self.model_dir = self.files.dir
        self.base_models = BaseModelStore(root, self.cache_dir)

    # ---------- reading ----------

    def versions(self) -> list[int]:
        """Published versions (those with a manifest), ascending."""
        return sorted(v for v, has_manifest in self._version_folders().items() if has_manifest)

    def latest(self) -> int | None:
        published = self.versions()
        return published[-1] if published else None

    def manifest(self, version: int) -> Manifest:
        try:
            payload = self.files.manifest_bytes(version_folder_name(version))
        except FileNotFoundError:
            raise VersionNotFoundError(f"model {self.name!r} has no version {version} under {self.root}") from None
        try:
            return Manifest.from_json_bytes(payload)
        except ValueError as e:
            raise CorruptArtifactError(f"model {self.name!r} v{version}: unreadable manifest: {e}") from e

    def state(self) -> RegistryState:
        try:
            return RegistryState.model_validate_json(self.fs.cat_file(f"{self.model_dir}/{STATE_NAME}"))
        except FileNotFoundError:
            return RegistryState()

    def champion(self) -> int | None:
        return self.state().champion

    def status(self, version: int) -> ModelStatus:
        state = self.state()
        if version == state.champion:
            return ModelStatus.CHAMPION
        return state.statuses.get(version) or self.manifest(version).status

    def uri(self, version: int) -> str:
        return self.files.uri(version_folder_name(version))

    def base_model_path(self, reference: str) -> Path:
        """A local folder of a manifest's (or a record's) ``base_model``: ``base:<id>`` resolved in this registry
        (verified, downloaded when remote); a path from an older manifest is returned as it is."""
        if not is_ref(reference):
            return Path(reference)
        return self.base_models.local_path(reference.removeprefix("base:"))

    def model_version_record(self, version: int) -> ModelVersion:
        """The ``model-versions`` topic record of a version, with its live status."""
        manifest = self.manifest(version)
        return ModelVersion(
            name=self.name,
            version=version,
            kind=manifest.kind,
            uri=self.uri(version),
            sha256=manifest.files,
            base_model=manifest.base_model,
            parent=manifest.parent,
            metrics=manifest.metrics,
            gate=manifest.gate,
            status=self.status(version),
            ts=manifest.created_ts,
        )

    # ---------- verifying and loading ----------

    def verify(self, version: int) -> Manifest:
        """Re-hash every file of ``version``; raise :class:`CorruptArtifactError` on any difference."""
        manifest = self.manifest(version)
        self.files.verify(version_folder_name(version), manifest.files, f"model {self.name!r} v{version}")
        return manifest

    def local_path(self, version: int | None = None, verify: bool = True) -> Path:
        """A local folder holding ``version`` (the champion when None), verified against its manifest.

        Remote versions are downloaded into the cache (staged, verified, then renamed into place).
        """
        version = self._resolve(version)
        manifest = self.manifest(version)
        folder = version_folder_name(version)
        return self.files.local_copy(
            folder, manifest.files, f"model {self.name!r} v{version}", verify, f"{folder}-{manifest.created_ts:.0f}"
        )

    # ---------- writing ----------

    def publish(self, source: Path, draft: ManifestDraft) -> Manifest:
        """Publish the files under ``source`` as the next version; the folder appears whole or not at all."""
        files = hash_folder(source)
        if not files:
            raise RegistryError(f"nothing to publish: {source} holds no files")
        with self._writer_lock():
            version = self._next_version()
            manifest = Manifest(name=self.name, version=version, files=files, **draft.model_dump())
            self.files.publish(version_folder_name(version), source, files, manifest.to_json_bytes())
        log.info("published %s v%d (%s, %d files, status %s)", self.name, version, draft.kind, len(files), draft.status)
        return manifest

    def promote(self, version: int, force: bool = False) -> Manifest:
        """Make ``version`` the champion after verifying it; a gate-refused version needs ``force``."""
        manifest = self.verify(version)
        if manifest.status is ModelStatus.REFUSED and not force:
            raise RegistryError(f"model {self.name!r} v{version} was refused by the gate; promote it with force")
        with self._writer_lock():
            self._write_state(self.state().promoted(version))
        log.info("promoted %s v%d to champion", self.name, version)
        return manifest

    def rollback(self) -> int | None:
        """Mark the champion rolled back and restore the previous one; returns the new champion (or None)."""
        with self._writer_lock():
            state = self.state()
            if state.champion is None:
                raise VersionNotFoundError(f"model {self.name!r} has no champion to roll back")
            new_state = state.rolled_back()
            self._write_state(new_state)
        log.info("rolled back %s v%d; champion is now %s", self.name, state.champion, new_state.champion)
        return new_state.champion

    # ---------- internals ----------

    def _resolve(self, version: int | None) -> int:
        if version is not None:
            return version
        champion = self.champion()
        if champion is None:
            raise VersionNotFoundError(f"model {self.name!r} has no champion under {self.root}")
        return champion

    def _version_folders(self) -> dict[int, bool]:
        """Every version-numbered folder, staging ones included, mapped to whether it holds a manifest."""
        folders: dict[int, bool] = {}
        for name, published in self.files.entries().items():
            number = parse_version_folder(name)
            if number is not None:
                folders[number] = folders.get(number, False) or published
        return folders

    def _next_version(self) -> int:
        return max(self._version_folders(), default=0) + 1

    def _write_state(self, state: RegistryState) -> None:
        path = f"{self.model_dir}/{STATE_NAME}"
        if self.is_local:
            Path(self.model_dir).mkdir(parents=True, exist_ok=True)
            staging = Path(f"{path}.tmp-{uuid.uuid4().hex[:8]}")
            write_durably(staging, state.to_json_bytes())
            os.replace(staging, path)
            fsync_dir(Path(self.model_dir))
        else:
            self.fs.pipe_file(path, state.to_json_bytes())  # one object put: atomic on object stores

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        if not self.is_local:
            yield
            return
        Path(self.model_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(self.model_dir) / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
