"""The policy a worker serves profiles with, and how a new model version replaces it.

A version comes from the model registry (:mod:`lettingo.registry`): its ``ModelVersion`` record names the
registry folder (``uri``) and the sha256 of every file. It is switched in only after (1) the registry's
manifest lists exactly the record's files and the registry re-verifies every file's sha256
(:meth:`ModelRegistry.local_path`), (2) the generators' ``hf`` backend loads it (a LoRA adapter on its base
model, or a full model) and (3) a smoke generation returns a non-empty profile. The previous policy is kept for
:meth:`PolicyHolder.rollback`.

No Kafka here: the streams worker and the offline tools share it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lettingo.data import Item, Sentiment
from lettingo.errors import ModelError
from lettingo.generators import Generator, make_generator
from lettingo.prompts.profile import HistoryEntry, profile_prompt_from_entries
from lettingo.records import ModelVersion
from lettingo.registry import ModelRegistry, RegistryError
from lettingo.registry.manifest import version_folder_name

log = logging.getLogger(__name__)


class ModelRefusedError(ModelError):
    """A model version that must not serve: not in its registry, bad checksum, load or smoke-generation failure."""

    def __init__(self, version: str, reason: str, detail: str) -> None:
        super().__init__(f"model version {version} refused ({reason}): {detail}")
        self.version = version
        self.reason = reason


@dataclass(frozen=True)
class LoadedPolicy:
    version: str  # "<name>:<version>", or "default" for the configured policy
    generator: Generator


def label_of(record: ModelVersion) -> str:
    return f"{record.name}:{record.version}"


def registry_of(record: ModelVersion, cache_dir: Path | None = None) -> ModelRegistry:
    """The registry a record's ``uri`` points into: ``<root>/<name>/v000042`` (a remote one downloads into
    ``cache_dir``)."""
    root, name, folder = [*record.uri.rstrip("/").rsplit("/", 2), "", "", ""][:3]
    if name != record.name or folder != version_folder_name(record.version):
        raise ModelRefusedError(
            label_of(record),
            "bad_uri",
            f"{record.uri} is not <registry root>/{record.name}/{version_folder_name(record.version)}",
        )
    return ModelRegistry(root, record.name, cache_dir)


def verify_files(record: ModelVersion, cache_dir: Path | None = None) -> Path:
    """A local folder of the version, once the registry has verified every file against its manifest and the
    manifest's files are exactly the record's."""
    label = label_of(record)
    registry = registry_of(record, cache_dir)
    try:
        manifest = registry.manifest(record.version)
        if manifest.files != record.sha256:
            raise ModelRefusedError(label, "record_mismatch", "the record's sha256 list is not the registry manifest's")
        return registry.local_path(record.version, verify=True)
    except RegistryError as e:
        reason = "not_found" if type(e).__name__ == "VersionNotFoundError" else "checksum"
        raise ModelRefusedError(label, reason, str(e)) from e


def base_model_folder(record: ModelVersion, cache_dir: Path | None = None) -> str:
    """A local folder of the record's base model, read from the version's own registry (verified, downloaded
    into the cache when remote)."""
    try:
        return str(registry_of(record, cache_dir).base_model_path(record.base_model))
    except RegistryError as e:
        raise ModelRefusedError(label_of(record), "base_model", str(e)) from e


def generator_for(record: ModelVersion, folder: Path, cache_dir: Path | None = None) -> Generator:
    """The ``hf`` backend on the version: a LoRA adapter on its base model, or a full model."""
    if record.kind == "lora":
        return make_generator(
            f"hf:{base_model_folder(record, cache_dir)}", adapter=str(folder), version=label_of(record)
        )
    return make_generator(f"hf:{folder}", version=label_of(record))


SMOKE_ENTRIES = (
    HistoryEntry(Item("smoke-1", "Heat (1995)", ("Action", "Crime"), 1995), 5.0, Sentiment.LIKE),
    HistoryEntry(Item("smoke-2", "Toy Story (1995)", ("Animation", "Comedy"), 1995), 2.0, Sentiment.DISLIKE),
)


def smoke_test(label: str, generator: Generator, max_new_tokens: int = 32) -> str:
    try:
        [[generation]] = generator.generate(
            [profile_prompt_from_entries(SMOKE_ENTRIES, "smoke")], n=1, temperature=0.0, max_new_tokens=max_new_tokens
        )
    except Exception as e:
        raise ModelRefusedError(label, "smoke_failed", repr(e)) from e
    if not generation.text.strip():
        raise ModelRefusedError(label, "smoke_empty", "the smoke generation returned an empty profile")
    return generation.text


def load_version(record: ModelVersion, cache_dir: Path | None = None) -> LoadedPolicy:
    label = label_of(record)
    folder = verify_files(record, cache_dir)
    try:
        generator = generator_for(record, folder, cache_dir)
    except ModelRefusedError:
        raise
    except Exception as e:
        raise ModelRefusedError(label, "load_failed", repr(e)) from e
    smoke_test(label, generator)
    return LoadedPolicy(label, generator)


@dataclass
class PolicyHolder:
    """The serving policy, swapped atomically; the one before it is kept for rollback."""

    current: LoadedPolicy
    previous: LoadedPolicy | None = None
    refused: dict[str, str] = field(default_factory=dict)  # version -> reason
    # Where versions from a remote registry are downloaded (the worker's <home>/model-cache).
    cache_dir: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_spec(cls, spec: str, cache_dir: Path | None = None) -> PolicyHolder:
        generator = make_generator(spec)
        smoke_test("default", generator)
        return cls(LoadedPolicy("default", generator), cache_dir=cache_dir)

    def switch_to(self, record: ModelVersion) -> LoadedPolicy:
        """Verify, load and smoke-test ``record``, then serve it; raise :class:`ModelRefusedError` otherwise.
        The version served before it becomes :attr:`previous` (a champion that was the previous one is
        switched back to without loading it again)."""
        label = label_of(record)
        if label == self.current.version:
            return self.current
        if self.previous is not None and label == self.previous.version:
            return self.rollback()
        try:
            loaded = load_version(record, self.cache_dir)
        except ModelRefusedError as e:
            self.refused[label] = e.reason
            log.warning("refused model_version=%s: %s", label, e)
            raise
        with self._lock:
            self.previous, self.current = self.current, loaded
        log.info("serving model_version=%s (previous %s)", loaded.version, self.previous.version)
        return loaded

    def roll_back_from(self, record: ModelVersion) -> LoadedPolicy | None:
        """``record`` was rolled back in the registry: if it is served, serve the previous version again."""
        if label_of(record) != self.current.version or self.previous is None:
            return None
        return self.rollback()

    def rollback(self) -> LoadedPolicy:
        with self._lock:
            if self.previous is None:
                raise ValueError("no previous model version to roll back to")
            self.current, self.previous = self.previous, self.current
        log.warning("rolled back to model_version=%s", self.current.version)
        return self.current
