"""Base models as registry artifacts: content-addressed, checksummed, and referenced by id, never by a path.

A model version's manifest names the model its adapter (or its fine-tune) starts from. A path there
(``.lettingo/models/nano-...``) breaks as soon as the registry is copied to another machine or read from object
storage, so base models live in the registry too, under ``<root>/base-models/<id>/``:

* ``<id>`` is the first 16 hex digits of the sha256 over the sorted ``path:sha256`` lines of the model's files, so
  the same model imported twice (or from two machines) is one artifact, and an id names exactly one content;
* ``manifest.json`` (written last) lists every file's sha256, where the model came from and when;
* a manifest references it as ``base:<id>`` (:data:`BASE_REF`), resolved in the registry the manifest lives in.

Reading works on any fsspec root: remote base models are downloaded once into the local cache, verified.
:func:`resolve_base_model` turns a ``base:<id>`` reference into a local folder, looking in the registries this
process has opened (:class:`~lettingo.registry.store.ModelRegistry` registers its root) and in any roots given.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lettingo.registry.errors import CorruptArtifactError, RegistryError, VersionNotFoundError
from lettingo.registry.files import FolderStore

log = logging.getLogger(__name__)

BASE_FOLDER = "base-models"
BASE_REF = "base:"
_KNOWN: dict[str, BaseModelStore] = {}


def content_id(files: dict[str, str]) -> str:
    """The id of a model's content: sha256 over its sorted ``path:sha256`` lines, 16 hex digits."""
    digest = hashlib.sha256("".join(f"{path}:{sha}\n" for path, sha in sorted(files.items())).encode())
    return digest.hexdigest()[:16]


def is_ref(value: str) -> bool:
    return value.startswith(BASE_REF)


def ref_of(base_id: str) -> str:
    return f"{BASE_REF}{base_id}"


class BaseModelManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str = Field(description="A readable label, e.g. smollm2-135m-instruct.")
    source: dict[str, Any] = Field(default_factory=dict, description="What it was imported from (file, sha256).")
    files: dict[str, str]
    created_ts: float = Field(default_factory=time.time)

    @property
    def ref(self) -> str:
        return ref_of(self.id)


class BaseModelStore:
    """The base models of one registry root (a folder or fsspec URL)."""

    def __init__(self, root: str | Path, cache_dir: Path | None = None) -> None:
        self.files = FolderStore(root, BASE_FOLDER, cache_dir)
        self.root = str(root)
        _KNOWN.setdefault(self.files.uri(""), self)

    def ids(self) -> list[str]:
        return sorted(self.files.published())

    def has(self, base_id: str) -> bool:
        return base_id in self.files.published()

    def manifest(self, base_id: str) -> BaseModelManifest:
        try:
            return BaseModelManifest.model_validate_json(self.files.manifest_bytes(base_id))
        except FileNotFoundError:
            raise VersionNotFoundError(f"no base model {base_id} under {self.root}") from None
        except ValueError as e:
            raise CorruptArtifactError(f"base model {base_id}: unreadable manifest: {e}") from e

    def verify(self, base_id: str) -> BaseModelManifest:
        manifest = self.manifest(base_id)
        self.files.verify(base_id, manifest.files, f"base model {base_id} ({manifest.name})")
        return manifest

    def local_path(self, base_id: str, verify: bool = True) -> Path:
        """A local folder holding the base model, verified against its manifest (downloaded when remote)."""
        manifest = self.manifest(base_id)
        return self.files.local_copy(base_id, manifest.files, f"base model {base_id}", verify=verify)

    def find_source(self, sha256: str, converter: int) -> BaseModelManifest | None:
        """The base model converted (by this ``converter``) from a source file with this sha256, if any."""
        for base_id in self.ids():
            manifest = self.manifest(base_id)
            if manifest.source.get("sha256") == sha256 and manifest.source.get("converter") == converter:
                return manifest
        return None

    def add(self, reference: str | Path, name: str | None = None) -> BaseModelManifest:
        """The base model for ``reference``: a ``base:<id>`` of this registry, or a local model folder, added
        (once: content-addressed) so that a manifest can name it by id."""
        reference = str(reference)
        if is_ref(reference):
            return self.verify(reference[len(BASE_REF) :])
        folder = Path(reference).expanduser()
        if not (folder / "config.json").is_file():
            raise RegistryError(f"base model {reference!r} is neither base:<id> nor a local model folder")
        return self.publish(folder, name or folder.name, {"folder": folder.name})

    def publish(self, folder: Path, name: str, source: dict[str, Any] | None = None) -> BaseModelManifest:
        """Add the model in ``folder``; returns the existing manifest when the same content is already here."""
        from lettingo.registry.manifest import hash_folder

        files = hash_folder(folder)
        if "config.json" not in files:
            raise RegistryError(f"{folder} holds no config.json: not a transformers model folder")
        base_id = content_id(files)
        if self.has(base_id):
            return self.verify(base_id)
        manifest = BaseModelManifest(id=base_id, name=name, source=source or {}, files=files)
        try:
            self.files.publish(base_id, folder, files, manifest.model_dump_json(indent=2).encode())
        except OSError:
            if not self.has(base_id):  # a concurrent import of the same content won the rename: keep theirs
                raise
            return self.verify(base_id)
        log.info("base model %s (%s): %d files under %s", base_id, name, len(files), self.files.uri(base_id))
        return manifest

    def uri(self, base_id: str) -> str:
        return self.files.uri(base_id)


def resolve_base_model(reference: str, roots: Iterable[str | Path] = ()) -> str:
    """A local folder for ``reference``: a ``base:<id>`` looked up in ``roots`` and then in every registry this
    process opened; anything else (a path, a hub id) is returned unchanged."""
    if not is_ref(reference):
        return reference
    base_id = reference[len(BASE_REF) :]
    stores = [BaseModelStore(r) for r in roots] + list(_KNOWN.values())
    for store in stores:
        if store.has(base_id):
            return str(store.local_path(base_id))
    looked = ", ".join(dict.fromkeys(s.root for s in stores)) or "no registry"
    raise VersionNotFoundError(f"base model {base_id} is in none of the registries opened ({looked})")
