"""The policy a worker serves profiles with, and how a new model version replaces it.

A version is switched in only after (1) every file's sha256 matches the ModelVersion record, (2) it loads and
(3) a smoke generation returns a non-empty profile. The previous policy is kept for :meth:`PolicyHolder.rollback`.
A version folder names its generator in ``policy.json`` (``{"generator": "writer:titles"}``) or holds model
weights that :func:`make_generator` loads.

No Kafka here: the streams worker and the offline tools share it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lettingo.data import Item, Sentiment
from lettingo.prompts.profile import HistoryEntry, ProfilePrompt, profile_prompt_from_entries
from lettingo.records import ModelVersion
from lettingo.writers import write_profile

log = logging.getLogger(__name__)


class ProfileGenerator(Protocol):
    """Writes one profile per (prompt, seed); batched so model backends can fill a batch."""

    name: str

    def generate(self, prompts: Sequence[ProfilePrompt], seeds: Sequence[int]) -> list[str]: ...


@dataclass
class WriterGenerator:
    """The cheap ``writer:`` backend: hand-written profile writers, one per seed in turn (``writer:a,b,c``)."""

    writers: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or "writer:" + ",".join(self.writers)

    def generate(self, prompts: Sequence[ProfilePrompt], seeds: Sequence[int]) -> list[str]:
        return [
            write_profile(self.writers[seed % len(self.writers)], p.entries, random.Random(seed))
            for p, seed in zip(prompts, seeds, strict=True)
        ]


def make_generator(spec: str, model_path: Path | None = None) -> ProfileGenerator:
    """``writer:<names>``, or any spec the generators package knows (nano, hf, vllm, openai)."""
    if spec.startswith("writer:"):
        return WriterGenerator(tuple(n for n in spec.removeprefix("writer:").split(",") if n))
    try:
        from lettingo.generators import make_generator as make_model_generator  # type: ignore[import-not-found]
    except ImportError as e:
        raise ValueError(f"generator spec {spec!r} needs lettingo.generators, which is not available") from e
    return make_model_generator(spec if model_path is None else f"{spec}:{model_path}")


class ModelRefusedError(Exception):
    """A model version that must not serve: bad checksum, missing files, load or smoke-generation failure."""

    def __init__(self, version: str, reason: str, detail: str) -> None:
        super().__init__(f"model version {version} refused ({reason}): {detail}")
        self.version = version
        self.reason = reason


@dataclass(frozen=True)
class LoadedPolicy:
    version: str  # "<name>:<version>", or "default" for the configured policy
    generator: ProfileGenerator


def local_folder(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def verify_files(record: ModelVersion) -> Path:
    """The version's folder, once every file listed in ``record.sha256`` is there with that hash."""
    label = f"{record.name}:{record.version}"
    if not record.sha256:
        raise ModelRefusedError(label, "no_checksums", "the record lists no files")
    folder = local_folder(record.uri)
    for relative, expected in sorted(record.sha256.items()):
        path = folder / relative
        if not path.is_file():
            raise ModelRefusedError(label, "missing_file", f"{path} does not exist")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise ModelRefusedError(label, "checksum", f"{relative}: sha256 {actual[:12]}.. != {expected[:12]}..")
    return folder


SMOKE_ENTRIES = (
    HistoryEntry(Item("smoke-1", "Heat (1995)", ("Action", "Crime"), 1995), 5.0, Sentiment.LIKE),
    HistoryEntry(Item("smoke-2", "Toy Story (1995)", ("Animation", "Comedy"), 1995), 2.0, Sentiment.DISLIKE),
)


def smoke_test(label: str, generator: ProfileGenerator) -> str:
    try:
        [text] = generator.generate([profile_prompt_from_entries(SMOKE_ENTRIES, "smoke")], [0])
    except Exception as e:
        raise ModelRefusedError(label, "smoke_failed", repr(e)) from e
    if not text or not text.strip():
        raise ModelRefusedError(label, "smoke_empty", "the smoke generation returned an empty profile")
    return text


def load_version(record: ModelVersion) -> LoadedPolicy:
    label = f"{record.name}:{record.version}"
    folder = verify_files(record)
    try:
        policy_file = folder / "policy.json"
        if policy_file.is_file():
            generator = make_generator(json.loads(policy_file.read_text())["generator"])
        else:
            generator = make_generator(f"nano:{folder}" if record.kind == "full" else f"lora:{folder}")
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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_spec(cls, spec: str) -> PolicyHolder:
        return cls(LoadedPolicy("default", make_generator(spec)))

    def switch_to(self, record: ModelVersion) -> LoadedPolicy:
        """Verify, load and smoke-test ``record``, then serve it; raise :class:`ModelRefusedError` otherwise."""
        label = f"{record.name}:{record.version}"
        if label == self.current.version:
            return self.current
        try:
            loaded = load_version(record)
        except ModelRefusedError as e:
            self.refused[label] = e.reason
            log.warning("refused model_version=%s: %s", label, e)
            raise
        with self._lock:
            self.previous, self.current = self.current, loaded
        log.info("serving model_version=%s (previous %s)", loaded.version, self.previous.version)
        return loaded

    def rollback(self) -> LoadedPolicy:
        with self._lock:
            if self.previous is None:
                raise ValueError("no previous model version to roll back to")
            self.current, self.previous = self.previous, self.current
        log.warning("rolled back to model_version=%s", self.current.version)
        return self.current
