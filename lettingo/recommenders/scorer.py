"""Frozen linear scorers and the reader's on-disk format: arrays in one ``.npz``, a manifest with its sha256.

No pickle: loading a reader never runs code from the file, and the checksum refuses a file that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from lettingo.errors import ModelError

ARRAYS_FILE = "reader.npz"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class ReaderChecksumError(ModelError):
    """The reader's arrays do not match the checksum in its manifest: the file is corrupted or was edited."""


@dataclass(frozen=True)
class LinearScorer:
    """Standardise, then a linear layer: one logit (binary ranking score) or a softmax over classes."""

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # classes x features (1 x features for binary)
    intercept: np.ndarray
    classes: tuple[str, ...]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, feature_names: list[str], c: float = 1.0) -> LinearScorer:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-9] = 1.0
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit((x - mean) / scale, y)
        return cls(
            tuple(feature_names), mean, scale, model.coef_, model.intercept_, tuple(str(k) for k in model.classes_)
        )

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef.T + self.intercept

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}/mean": self.mean,
            f"{prefix}/scale": self.scale,
            f"{prefix}/coef": self.coef,
            f"{prefix}/intercept": self.intercept,
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], prefix: str, names: list[str], classes: list[str]
    ) -> LinearScorer:
        return cls(
            tuple(names),
            arrays[f"{prefix}/mean"],
            arrays[f"{prefix}/scale"],
            arrays[f"{prefix}/coef"],
            arrays[f"{prefix}/intercept"],
            tuple(classes),
        )


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_frozen(folder: Path, arrays: dict[str, np.ndarray], manifest: dict) -> None:
    """Arrays, then the manifest that names their checksum; the manifest is written last, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays_path = folder / ARRAYS_FILE
    tmp = folder / f".{ARRAYS_FILE}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **kwds as its allow_pickle flag
    tmp.replace(arrays_path)
    full = {**manifest, "format_version": FORMAT_VERSION, "sha256": {ARRAYS_FILE: sha256_of(arrays_path)}}
    tmp_manifest = folder / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
    tmp_manifest.write_text(json.dumps(full, indent=2, sort_keys=True))
    tmp_manifest.replace(folder / MANIFEST_FILE)


def read_frozen(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and manifest of a frozen reader; :class:`ReaderChecksumError` if the arrays changed."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.exists():
        raise FileNotFoundError(f"no reader at {folder} (missing {MANIFEST_FILE}); run `lettingo recommender build`")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ReaderChecksumError(f"{folder}: reader format {manifest.get('format_version')} is not {FORMAT_VERSION}")
    expected = manifest.get("sha256", {}).get(ARRAYS_FILE)
    actual = sha256_of(folder / ARRAYS_FILE)
    if expected != actual:
        raise ReaderChecksumError(
            f"refusing to load the reader at {folder}: {ARRAYS_FILE} has sha256 {actual[:16]}…, its manifest says "
            f"{str(expected)[:16]}…; the file is corrupted or was modified. "
            "Rebuild it with `lettingo recommender build`."
        )
    with np.load(folder / ARRAYS_FILE, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, manifest
