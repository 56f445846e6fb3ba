"""The manifest of one published model version, and the hashing it relies on.

The manifest is written last into a version folder: a folder without a valid ``manifest.json`` is not a version.
It lists the sha256 of every other file in the folder, so a version can be re-verified at any time.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field

from lettingo.records import ModelStatus

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


class ManifestDraft(BaseModel):
    """Everything the publisher knows about a version before the registry numbers and hashes it."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["lora", "full"]
    base_model: str = Field(
        description="The base model the weights (or the adapter) belong to: ``base:<content id>``, a base model of "
        "the same registry (lettingo.registry.base_models), so the registry can be copied or read remotely; "
        "manifests written before base models were registered hold a path."
    )
    adapter_config: dict[str, Any] | None = Field(None, description="The PEFT adapter config for a LoRA version.")
    training_config: dict[str, Any] = Field(default_factory=dict)
    data_lineage: dict[str, Any] = Field(
        default_factory=dict, description="Pair counts, rejected counts, topic offsets or input file hashes."
    )
    metrics: dict[str, float] = Field(default_factory=dict)
    gate: dict[str, Any] = Field(default_factory=dict, description="The gate's comparison with the champion.")
    parent: int | None = Field(None, description="The version this one was trained from (its reference policy).")
    library_versions: dict[str, str] = Field(default_factory=dict)
    status: Literal[ModelStatus.CANDIDATE, ModelStatus.REFUSED] = ModelStatus.CANDIDATE


class Manifest(ManifestDraft):
    """A published version. ``status`` is the status at publication; the live one is in the registry's state."""

    format: int = MANIFEST_FORMAT
    name: str
    version: int = Field(ge=1)
    files: dict[str, str] = Field(description="sha256 of every file of the version except the manifest itself.")
    created_ts: float = Field(default_factory=time.time)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    @classmethod
    def from_json_bytes(cls, payload: bytes) -> Manifest:
        return cls.model_validate_json(payload)


def sha256_of_stream(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_of_file(path: Path) -> str:
    with path.open("rb") as stream:
        return sha256_of_stream(stream)


def hash_folder(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative POSIX paths, sorted), the manifest excluded."""
    hashes: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative != MANIFEST_NAME:
            hashes[relative] = sha256_of_file(path)
    return hashes


def version_folder_name(version: int) -> str:
    return f"v{version:06d}"


def parse_version_folder(name: str) -> int | None:
    """The version number of a folder name like ``v000012`` (or a staging ``.tmp-v000012-...``), else None."""
    stem = name.removeprefix(".tmp-")
    if len(stem) >= 7 and stem[0] == "v" and stem[1:7].isdigit() and (len(stem) == 7 or stem[7] == "-"):
        return int(stem[1:7])
    return None
