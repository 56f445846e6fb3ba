"""``build_nano``: tokenizer + Llama model + SFT on writer profiles, cached by a content hash of its inputs.

The cache key covers the dataset's files, the config, the source of the code that shapes the model and the
versions of torch / transformers / tokenizers; a second build with the same inputs returns the existing
folder at once. Builds write to a temporary folder and rename it into place, under a lock, so an interrupted
or concurrent build never leaves a half-written model where a reader would find it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import random
import shutil
import time
from importlib.metadata import version
from pathlib import Path

import torch
from transformers import GenerationConfig

import lettingo
from lettingo.data import load_dataset
from lettingo.nano.config import NanoConfig
from lettingo.nano.sft_data import tokenizer_corpus, training_prompts
from lettingo.nano.tokenizer import train_tokenizer
from lettingo.nano.train import make_model, train_sft

log = logging.getLogger(__name__)
MANIFEST = "lettingo_nano.json"
_PACKAGE = Path(lettingo.__file__).parent
# Source files whose content decides what a build produces.
_CODE = ("nano/*.py", "writers.py", "prompts/*.py", "data/*.py")  # prompts: the summary line is SFT input


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_fingerprint(dataset_path: Path) -> dict[str, str]:
    files = [dataset_path] if dataset_path.is_file() else sorted(p for p in dataset_path.iterdir() if p.is_file())
    return {p.name: _sha256_file(p) for p in files}


def code_fingerprint() -> str:
    h = hashlib.sha256()
    for pattern in _CODE:
        for path in sorted(_PACKAGE.glob(pattern)):
            h.update(path.relative_to(_PACKAGE).as_posix().encode())
            h.update(path.read_bytes())
    for lib in ("torch", "transformers", "tokenizers"):
        h.update(f"{lib}=={version(lib)}".encode())
    return h.hexdigest()


def build_key(dataset_path: Path, config: NanoConfig) -> str:
    blob = json.dumps(
        {"dataset": dataset_fingerprint(dataset_path), "config": config.to_dict(), "code": code_fingerprint()},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_built(path: Path) -> bool:
    return (path / MANIFEST).is_file() and (path / "config.json").is_file()


def build_nano(
    dataset_path: str | Path, out_root: str | Path, config: NanoConfig | None = None, *, threads: int | None = 1
) -> Path:
    """Build (or find) the nano model for a dataset; returns its folder, loadable by ``from_pretrained``.

    ``threads`` sets torch's CPU threads for the build; ``None`` keeps torch's default. One thread is the
    default: it makes the build bit-for-bit reproducible, and on a shared 2-core machine two threads were
    measured at half the speed of one (each waits on the other when a core is taken). Not part of the cache key.
    """
    config = config or NanoConfig()
    dataset_path, out_root = Path(dataset_path), Path(out_root)
    key = build_key(dataset_path, config)
    target = out_root / f"nano-{key}"
    if is_built(target):
        log.info("nano model %s already built", target)
        return target
    out_root.mkdir(parents=True, exist_ok=True)
    with (out_root / f".nano-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same key waits, then finds it built
        if is_built(target):
            return target
        tmp = out_root / f".nano-{key}.tmp-{os.getpid()}"
        previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _build_into(tmp, dataset_path, config, key)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        finally:
            torch.set_num_threads(previous_threads)
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("nano model built at %s", target)
    return target


def _build_into(folder: Path, dataset_path: Path, config: NanoConfig, key: str) -> None:
    started = time.perf_counter()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    dataset = load_dataset(dataset_path)
    prompts = training_prompts(dataset, config)
    if not prompts:
        raise ValueError(f"{dataset_path}: no training users with enough history to build the nano model")
    tokenizer = train_tokenizer(
        tokenizer_corpus(prompts, random.Random(config.seed)),
        [item.title for item in dataset.items.values()],
        config.bpe_vocab_size,
    )
    model = make_model(config, tokenizer)
    prep_seconds = time.perf_counter() - started
    log.info("nano: %d prompts, vocab %d, %d parameters", len(prompts), len(tokenizer), model.num_parameters())
    stats = train_sft(model, tokenizer, prompts, config)
    model.generation_config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        max_new_tokens=96,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    manifest = {
        "name": f"nano-{key}",
        "key": key,
        "dataset": str(dataset_path),
        "dataset_files": dataset_fingerprint(dataset_path),
        "config": config.to_dict(),
        "code": code_fingerprint(),
        "parameters": model.num_parameters(),
        "vocab_size": len(tokenizer),
        "training_prompts": len(prompts),
        "sft": {
            "steps": stats.steps,
            "first_loss": round(stats.first_loss, 4),
            "final_loss": round(stats.final_loss, 4),
            "seconds": round(stats.seconds, 1),
        },
        "prep_seconds": round(prep_seconds, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(model_path: str | Path) -> dict[str, object] | None:
    path = Path(model_path) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None
