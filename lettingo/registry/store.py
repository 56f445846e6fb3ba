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
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from lettingo.records import ModelStatus, ModelVersion
from lettingo.registry.errors import CorruptArtifactError, RegistryError, VersionNotFoundError
from lettingo.registry.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestDraft,
    hash_folder,
    parse_version_folder,
    sha256_of_stream,
    version_folder_name,
)
from lettingo.registry.state import STATE_NAME, RegistryState
from lettingo.settings import get_settings

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "profile-generator"


class ModelRegistry:
    def __init__(self, root: str | Path, name: str = DEFAULT_MODEL_NAME, cache_dir: Path | None = None) -> None:
        self.fs, root_path = fsspec.core.url_to_fs(str(root))
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = str(root)
        self.name = name
        self.model_dir = f"{root_path.rstrip('/')}/{name}"
        self.cache_dir = cache_dir or get_settings().path("model-cache")

    # ---------- reading ----------

    def versions(self) -> list[int]:
        """Published versions (those with a manifest), ascending."""
        return sorted(v for v, has_manifest in self._version_folders().items() if has_manifest)

    def latest(self) -> int | None:
        published = self.versions()
        return published[-1] if published else None

    def manifest(self, version: int) -> Manifest:
        path = f"{self._version_dir(version)}/{MANIFEST_NAME}"
        try:
            payload = self.fs.cat_file(path)
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
        return self.fs.unstrip_protocol(self._version_dir(version))

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
        folder = self._version_dir(version)
        found = {
            path[len(folder) + 1 :]: path for path in self.fs.find(folder) if path[len(folder) + 1 :] != MANIFEST_NAME
        }
        problems = [f"missing file {rel!r}" for rel in sorted(set(manifest.files) - set(found))]
        problems += [f"unexpected file {rel!r}" for rel in sorted(set(found) - set(manifest.files))]
        for rel, expected in sorted(manifest.files.items()):
            if rel in found:
                with self.fs.open(found[rel], "rb") as stream:
                    actual = sha256_of_stream(stream)
                if actual != expected:
                    problems.append(f"{rel!r} has sha256 {actual[:12]}..., the manifest says {expected[:12]}...")
        if problems:
            where = f"model {self.name!r} v{version} at {self.uri(version)}"
            raise CorruptArtifactError(f"{where} is corrupted, refusing it: " + "; ".join(problems))
        return manifest

    def local_path(self, version: int | None = None, verify: bool = True) -> Path:
        """A local folder holding ``version`` (the champion when None), verified against its manifest.

        Remote versions are downloaded into the cache (staged, verified, then renamed into place).
        """
        version = self._resolve(version)
        if self.is_local:
            if verify:
                self.verify(version)
            return Path(self._version_dir(version))
        manifest = self.manifest(version)
        target = self.cache_dir / self.name / f"{version_folder_name(version)}-{manifest.created_ts:.0f}"
        if target.exists():
            if not verify or _local_matches(target, manifest):
                return target
            log.warning("cached copy of %s v%d does not verify; downloading again", self.name, version)
            shutil.rmtree(target)
        self.verify(version)
        staging = target.with_name(f".tmp-{target.name}-{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
        try:
            self.fs.get(self._version_dir(version) + "/", str(staging), recursive=True)
            if not _local_matches(staging, manifest):
                raise CorruptArtifactError(f"model {self.name!r} v{version}: the downloaded copy does not verify")
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    # ---------- writing ----------

    def publish(self, source: Path, draft: ManifestDraft) -> Manifest:
        """Publish the files under ``source`` as the next version; the folder appears whole or not at all."""
        files = hash_folder(source)
        if not files:
            raise RegistryError(f"nothing to publish: {source} holds no files")
        with self._writer_lock():
            version = self._next_version()
            manifest = Manifest(name=self.name, version=version, files=files, **draft.model_dump())
            if self.is_local:
                self._publish_local(source, manifest)
            else:
                self._publish_remote(source, manifest)
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

    def _version_dir(self, version: int) -> str:
        return f"{self.model_dir}/{version_folder_name(version)}"

    def _resolve(self, version: int | None) -> int:
        if version is not None:
            return version
        champion = self.champion()
        if champion is None:
            raise VersionNotFoundError(f"model {self.name!r} has no champion under {self.root}")
        return champion

    def _version_folders(self) -> dict[int, bool]:
        """Every version-numbered folder, staging ones included, mapped to whether it holds a manifest."""
        try:
            entries = self.fs.ls(self.model_dir, detail=False)
        except FileNotFoundError:
            return {}
        folders: dict[int, bool] = {}
        for entry in entries:
            base = entry.rstrip("/").rsplit("/", 1)[-1]
            number = parse_version_folder(base)
            if number is None:
                continue
            published = not base.startswith(".tmp-") and self.fs.exists(f"{entry.rstrip('/')}/{MANIFEST_NAME}")
            folders[number] = folders.get(number, False) or published
        return folders

    def _next_version(self) -> int:
        return max(self._version_folders(), default=0) + 1

    def _publish_local(self, source: Path, manifest: Manifest) -> None:
        model_dir = Path(self.model_dir)
        final = model_dir / version_folder_name(manifest.version)
        staging = model_dir / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        try:
            for rel in manifest.files:
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_file(source / rel, target)
            if hash_folder(staging) != manifest.files:
                raise RegistryError(f"{source} changed while it was being published")
            _write_durably(staging / MANIFEST_NAME, manifest.to_json_bytes())
            _fsync_dir(staging)
            os.rename(staging, final)  # fails if the name exists: never overwrite a version
            _fsync_dir(model_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _publish_remote(self, source: Path, manifest: Manifest) -> None:
        final = self._version_dir(manifest.version)
        for rel in manifest.files:
            self.fs.put_file(str(source / rel), f"{final}/{rel}")
        self.fs.pipe_file(f"{final}/{MANIFEST_NAME}", manifest.to_json_bytes())

    def _write_state(self, state: RegistryState) -> None:
        path = f"{self.model_dir}/{STATE_NAME}"
        if self.is_local:
            Path(self.model_dir).mkdir(parents=True, exist_ok=True)
            staging = Path(f"{path}.tmp-{uuid.uuid4().hex[:8]}")
            _write_durably(staging, state.to_json_bytes())
            os.replace(staging, path)
            _fsync_dir(Path(self.model_dir))
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


def _copy_file(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


def _write_durably(path: Path, payload: bytes) -> None:
    with path.open("wb") as stream:
        stream.write(payload)
        stream.flush()
        os.fsync(stream.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _local_matches(folder: Path, manifest: Manifest) -> bool:
    try:
        return hash_folder(folder) == manifest.files
    except OSError:
        return False
