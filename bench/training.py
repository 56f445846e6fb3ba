"""Training: DPO pairs/s and peak memory on CPU for the nano model, by calling bench/bench_training.py (another
engineer's benchmark, run as its own command: one process per configuration) and re-filing its figures with
the harness's machine, date, commit and command."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import REPO, RESULTS, Options, print_table, write_result


def run(opts: Options) -> dict:
    started = time.perf_counter()
    # its default work folder (.lettingo/bench-training) keeps its quick nano build between runs
    args = ["--models", "nano", "--kinds", "lora", "full", "--pairs", "32" if opts.quick else "64"]
    command = [sys.executable, str(REPO / "bench" / "bench_training.py"), *args]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_training.py failed:\n{done.stderr[-3000:]}")
    inner = json.loads((RESULTS / "training.json").read_text())
    rows = inner["results"]
    print_table(
        "training: DPO on CPU, nano model (quick build), one process per configuration",
        ["kind", "params", "pairs", "loop s", "pairs/s", "round s", "peak RSS MiB"],
        [
            [
                r["kind"],
                f"{r['parameters']:,}",
                r["pairs"],
                r["train_loop_seconds"],
                r["pairs_per_second"],
                r["round_seconds"],
                r["peak_rss_mib"],
            ]
            for r in rows
        ],
    )
    figures = {"bench_training_command": " ".join(["bench/bench_training.py", *args]), "results": rows}
    write_result("training", opts, figures, started)
    return figures
