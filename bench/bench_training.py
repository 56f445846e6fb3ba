"""DPO training throughput (pairs/s) and peak memory on CPU, for the tiny test model or the nano model.

Each configuration runs in its own process, so its peak RSS (``ru_maxrss``) is its own. Prints a table and
writes ``bench/results/training.json``.

    nice .venv/bin/python bench/bench_training.py                       # tiny + nano (quick build), LoRA + full
    nice .venv/bin/python bench/bench_training.py --models tiny --pairs 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "training.json"
DATASET = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


def _model_path(model: str, work: Path) -> Path:
    if model == "tiny":
        from trainer.tiny_model import build_tiny_policy

        return build_tiny_policy(work / "tiny", hidden_size=128, layers=3)
    from lettingo.nano.build import build_nano
    from lettingo.nano.config import NanoConfig

    return build_nano(DATASET, work / "nano", NanoConfig.quick())


def run_one(spec: dict) -> dict:
    """Train one round in this process and measure it."""
    import psutil
    import torch

    from trainer.config import DPORoundConfig
    from trainer.policy import PolicySource
    from trainer.tiny_model import synthetic_pairs
    from trainer.train import train_round

    work = Path(spec["work"])
    base = _model_path(spec["model"], work)
    pairs = synthetic_pairs(spec["pairs"], seed=1, history=spec["history"])
    config = DPORoundConfig(
        kind=spec["kind"],
        epochs=spec["epochs"],
        batch_size=spec["batch_size"],
        max_length=1024,
        seed=0,
        num_threads=spec["threads"] or None,
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tokens = sum(len(tokenizer(p.prompt + p.chosen)["input_ids"]) for p in pairs) / len(pairs)
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    result = train_round(pairs, PolicySource(base_model=str(base)), config, work / f"out-{spec['kind']}")
    round_seconds = time.perf_counter() - started
    from transformers import AutoModelForCausalLM

    parameters = AutoModelForCausalLM.from_pretrained(str(base)).num_parameters()
    return {
        **{k: v for k, v in spec.items() if k != "work"},
        "parameters": parameters,
        "mean_tokens_prompt_plus_chosen": round(tokens, 1),
        "train_loop_seconds": round(result.train_seconds, 2),
        "round_seconds": round(round_seconds, 2),
        "pairs_per_second": round(spec["pairs"] * spec["epochs"] / result.train_seconds, 2),
        "round_pairs_per_second": round(spec["pairs"] * spec["epochs"] / round_seconds, 2),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
        "final_loss": round(result.final_metrics().get("train_loss", float("nan")), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "nano"], choices=["tiny", "nano"])
    parser.add_argument("--kinds", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", nargs="+", type=int, default=[0], help="torch CPU threads; 0 = default.")
    parser.add_argument("--history", type=int, default=30, help="Titles per prompt.")
    parser.add_argument("--work", type=Path, default=Path(".lettingo/bench-training"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(json.loads(args.child))))
        return

    rows = []
    for model, kind, threads in [(m, k, t) for m in args.models for k in args.kinds for t in args.threads]:
        spec = {
            "model": model,
            "kind": kind,
            "threads": threads,
            "pairs": args.pairs,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "history": args.history,
            "work": str(args.work.resolve()),
        }
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            sys.exit(f"{model}/{kind} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    header = (
        f"{'model':<5} {'kind':<4} {'thr':>3} {'params':>9} {'tok/pair':>8} {'pairs':>5} {'loop s':>7} "
        f"{'pairs/s':>8} {'round s':>8} {'peak RSS MiB':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['model']:<5} {r['kind']:<4} {r['torch_threads']:>3} {r['parameters']:>9,} "
            f"{r['mean_tokens_prompt_plus_chosen']:>8} "
            f"{r['pairs']:>5} {r['train_loop_seconds']:>7} {r['pairs_per_second']:>8} {r['round_seconds']:>8} "
            f"{r['peak_rss_mib']:>12}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_end": os.getloadavg(),
    }
    RESULTS.write_text(json.dumps({"machine": machine, "command": " ".join(sys.argv), "results": rows}, indent=2))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
