"""Durable pair batches: what was consumed from the topic is written to disk before its offsets are committed.

A batch lives in ``pending/`` until a round has used it (published or refused), then moves to ``done/``; a
trainer that crashes between the commit and the publication finds its pending batches again on restart.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lettingo.records import PreferencePair


@dataclass(frozen=True)
class StoredBatch:
    path: Path
    lineage: dict[str, Any]

    @property
    def lineage_path(self) -> Path:
        return self.path.with_suffix(".lineage.json")


class BatchStore:
    def __init__(self, folder: Path) -> None:
        self.pending = folder / "pending"
        self.done = folder / "done"

    def write(self, pairs: Sequence[PreferencePair], lineage: dict[str, Any]) -> StoredBatch:
        """Write the batch (JSONL) and its lineage, fsynced and renamed into place."""
        self.pending.mkdir(parents=True, exist_ok=True)
        stem = f"pairs-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        batch = StoredBatch(self.pending / f"{stem}.jsonl", lineage)
        _write_durably(batch.lineage_path, json.dumps(lineage, indent=2).encode())
        _write_durably(batch.path, b"".join(p.to_bytes() + b"\n" for p in pairs))
        return batch

    def pending_batches(self) -> list[StoredBatch]:
        if not self.pending.exists():
            return []
        batches = []
        for path in sorted(self.pending.glob("*.jsonl")):
            lineage_path = path.with_suffix(".lineage.json")
            lineage = json.loads(lineage_path.read_text()) if lineage_path.exists() else {}
            batches.append(StoredBatch(path, lineage))
        return batches

    def mark_done(self, batch: StoredBatch) -> None:
        self.done.mkdir(parents=True, exist_ok=True)
        if batch.lineage_path.exists():
            os.replace(batch.lineage_path, self.done / batch.lineage_path.name)
        os.replace(batch.path, self.done / batch.path.name)


def _write_durably(path: Path, payload: bytes) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    with staging.open("wb") as stream:
        stream.write(payload)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(staging, path)
