"""What every benchmark shares: the run's options, machine facts, medians, the rich table and the JSON file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DATASET = (REPO.parent / "shared" / "data" / "ml-latest-small").resolve()
HOME = REPO / ".lettingo"  # shared models and caches (nano model, frozen reader, embeddings)
WORK = HOME / "bench"  # per-run scratch: worker homes, training outputs; removed by each benchmark


@dataclass
class Options:
    quick: bool = False
    repeats: int = 3
    argv: list[str] = field(default_factory=lambda: list(sys.argv))

    @property
    def command(self) -> str:
        return " ".join(self.argv)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "lettingo", "streams", "trainer", "bench"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rounded(value: Any, digits: int = 3) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=note or None)
    for c in columns:
        table.add_column(c, justify="right" if c not in columns[:1] else "left")
    for row in rows:
        table.add_row(*(f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row))
    Console(width=160).print(table)


def write_result(name: str, opts: Options, figures: dict[str, Any], started: float) -> Path:
    """bench/results/<name>.json with the machine, date, commit and command beside the figures."""
    import time

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {
        "benchmark": name,
        "mode": "quick" if opts.quick else "full",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "command": opts.command,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        **rounded(figures),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written to {path.relative_to(REPO)}")
    return path
