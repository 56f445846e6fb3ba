"""Checksummed artifact folders under a registry root: ``<root>/<group>/<key>/`` with ``manifest.json`` written last.

Model versions (``<root>/<model name>/v000001/``) and base models (``<root>/base-models/<id>/``) are both such
folders. The root is a local folder or any fsspec URL. Locally a folder is staged in a hidden ``.tmp-*`` folder
and renamed into place, which is atomic; on object stores the files are uploaded first and the manifest last,
and a folder without a manifest is never read. Remote folders are read through a verified local cache copy.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from lettingo.registry.errors import CorruptArtifactError, RegistryError
from lettingo.registry.manifest import MANIFEST_NAME, hash_folder, sha256_of_stream

# Where a remote registry's files are downloaded when the caller names no folder (entry points pass
# <LETTINGO_HOME>/model-cache); a local registry is read in place.
DEFAULT_CACHE_DIR = Path(".lettingo") / "model-cache"

log = logging.getLogger(__name__)


class FolderStore:
    def __init__(self, root: str | Path, group: str, cache_dir: Path | None = None) -> None:
        self.fs, root_path = fsspec.core.url_to_fs(str(root))
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.group = group
        self.dir = f"{root_path.rstrip('/')}/{group}"
        self.cache_dir = cache_dir or DEFAULT_CACHE_DIR

    def key_dir(self, key: str) -> str:
        return f"{self.dir}/{key}"

    def uri(self, key: str) -> str:
        return self.fs.unstrip_protocol(self.key_dir(key) if key else self.dir)

    def entries(self) -> dict[str, bool]:
        """Every folder name under the group (staging ones included), mapped to whether it holds a manifest."""
        try:
            listed = self.fs.ls(self.dir, detail=False)
        except FileNotFoundError:
            return {}
        out = {}
        for entry in listed:
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            out[name] = not name.startswith(".") and self.fs.exists(f"{entry.rstrip('/')}/{MANIFEST_NAME}")
        return out

    def published(self) -> set[str]:
        return {name for name, has_manifest in self.entries().items() if has_manifest}

    def manifest_bytes(self, key: str) -> bytes:
        """Raises FileNotFoundError when ``key`` has no manifest."""
        return self.fs.cat_file(f"{self.key_dir(key)}/{MANIFEST_NAME}")

    def verify(self, key: str, files: dict[str, str], what: str) -> None:
        """Re-hash every file of ``key``; raise :class:`CorruptArtifactError` naming ``what`` on any difference."""
        folder = self.key_dir(key)
        found = {
            path[len(folder) + 1 :]: path for path in self.fs.find(folder) if path[len(folder) + 1 :] != MANIFEST_NAME
        }
        problems = [f"missing file {rel!r}" for rel in sorted(set(files) - set(found))]
        problems += [f"unexpected file {rel!r}" for rel in sorted(set(found) - set(files))]
        for rel, expected in sorted(files.items()):
            if rel in found:
                with self.fs.open(found[rel], "rb") as stream:
                    actual = sha256_of_stream(stream)
                if actual != expected:
                    problems.append(f"{rel!r} has sha256 {actual[:12]}..., the manifest says {expected[:12]}...")
        if problems:
            raise CorruptArtifactError(f"{what} at {self.uri(key)} is corrupted, refusing it: " + "; ".join(problems))

    def local_copy(
        self, key: str, files: dict[str, str], what: str, verify: bool = True, cache_name: str | None = None
    ) -> Path:
        """A local folder holding ``key``, verified; remote folders are downloaded into the cache (staged,
        verified, then renamed into place) and served from it while it still verifies."""
        if self.is_local:
            if verify:
                self.verify(key, files, what)
            return Path(self.key_dir(key))
        target = self.cache_dir / self.group / (cache_name or key)
        if target.exists():
            if not verify or local_matches(target, files):
                return target
            log.warning("cached copy of %s does not verify; downloading again", what)
            shutil.rmtree(target)
        self.verify(key, files, what)
        staging = target.with_name(f".tmp-{target.name}-{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
        try:
            self.fs.get(self.key_dir(key) + "/", str(staging), recursive=True)
            if not local_matches(staging, files):
                raise CorruptArtifactError(f"{what}: the downloaded copy does not verify")
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def publish(self, key: str, source: Path, files: dict[str, str], manifest: bytes) -> None:
        """The files of ``source`` (exactly ``files``) and the manifest as ``key``: whole or not at all."""
        if self.is_local:
            self._publish_local(key, source, files, manifest)
        else:
            final = self.key_dir(key)
            for rel in files:
                self.fs.put_file(str(source / rel), f"{final}/{rel}")
            self.fs.pipe_file(f"{final}/{MANIFEST_NAME}", manifest)

    def _publish_local(self, key: str, source: Path, files: dict[str, str], manifest: bytes) -> None:
        group_dir = Path(self.dir)
        group_dir.mkdir(parents=True, exist_ok=True)
        final = group_dir / key
        staging = group_dir / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        try:
            for rel in files:
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_file(source / rel, target)
            if hash_folder(staging) != files:
                raise RegistryError(f"{source} changed while it was being published")
            write_durably(staging / MANIFEST_NAME, manifest)
            fsync_dir(staging)
            os.rename(staging, final)  # fails if the name exists: never overwrite a published folder
            fsync_dir(group_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _copy_file(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


def write_durably(path: Path, payload: bytes) -> None:
    with path.open("wb") as stream:
        stream.write(payload)
        stream.flush()
        os.fsync(stream.fileno())


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def local_matches(folder: Path, files: dict[str, str]) -> bool:
    try:
        return hash_folder(folder) == files
    except OSError:
        return False
