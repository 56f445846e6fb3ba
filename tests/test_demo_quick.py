"""`lettingo demo --quick` end to end, as a newcomer runs it: broker, nano policy, frozen f_Rec, worker, trainer,
replay, a DPO round, then the report. The assertions read the report it writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.kafka
SYSTEMS = ("recent_only", "raw_history", "fixed_format", "base generator", "SFT on P+")


@pytest.fixture(scope="module")
def quick_run(kafka_bootstrap: str, nano_model: Path, frozen_reader: Path, tmp_path_factory) -> Path:
    """One quick demo run (the nano model and the reader are the suite's cached ones, as on a second run)."""
    runs = tmp_path_factory.mktemp("runs")
    env = {
        **os.environ,
        "LETTINGO_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LETTINGO_DATASET": str(REPO.parent / "shared" / "data" / "ml-latest-small"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "lettingo.cli.main", "demo", "--quick", "--runs", str(runs)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"demo failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    (run_dir,) = runs.iterdir()
    return run_dir


def test_quick_demo_reports_every_system_on_both_tasks(quick_run: Path):
    figures = json.loads((quick_run / "report.json").read_text())
    for task, headline in (("ranking", "hr@1"), ("sentiment", "accuracy")):
        systems = figures["metrics"][task]
        dpo = [name for name in systems if name.startswith("DPO")]
        assert len(dpo) == 1, f"{task}: no DPO-trained generator in {sorted(systems)}"
        for name in (*SYSTEMS, *dpo):
            estimate = systems[name][headline]
            assert 0.0 <= estimate["low"] <= estimate["value"] <= estimate["high"] <= 1.0, (task, name, estimate)
            assert figures["cases"][task][name] > 0
        difference = figures["differences"][task][f"{dpo[0]} - base generator"]
        assert difference["low"] <= difference["value"] <= difference["high"]


def test_quick_demo_report_shows_what_the_stream_did(quick_run: Path):
    report = (quick_run / "report.md").read_text()
    counts = {
        name: int(value.replace(",", ""))
        for name, value in re.findall(
            r"(interactions processed|profiles written|rewards|preference pairs): ([\d,]+)", report
        )
    }
    replayed = int(re.search(r"of ([\d,]+) replayed", report).group(1).replace(",", ""))
    assert replayed > 3_000 and counts["interactions processed"] >= replayed  # the worker caught up
    assert counts["profiles written"] > 0 and counts["rewards"] > 0 and counts["preference pairs"] > 0
    assert re.search(r"model versions published: \[1(, \d+)*\]", report)
    assert re.search(r"p50 [\d.]+ s, p95 [\d.]+ s, p99 [\d.]+ s", report)
    assert (quick_run / "stream.png").stat().st_size > 0
    assert (quick_run / "logs" / "worker.log").exists() and (quick_run / "logs" / "trainer.log").exists()


def test_quick_demo_report_shows_readable_profiles_and_the_gates_numbers(quick_run: Path):
    report = (quick_run / "report.md").read_text()
    served = re.search(r"\*\*served on `profiles` \(latest per user\)\*\* \((\d+) profiles\): (.*)", report)
    assert served and int(served.group(1)) > 0, "no quality line for the served profiles"
    well_formed = int(re.search(r"well-formed (\d+) %", served.group(2)).group(1))
    loops = int(re.search(r"repeated 4-grams (\d+) %", served.group(2)).group(1))
    assert well_formed >= 80 and loops <= 5, served.group(2)
    assert report.count("> user ") >= 6  # three sample profiles per system
    assert "What each row gives f_Rec on ranking" in report
    gate = report.split("## The trainer's gate", 1)[1]
    assert re.search(r"\| task_accuracy \| [\d.]+ \| [\d.]+ \| [-+][\d.]+ \| \[[-+][\d.]+, [-+][\d.]+\] \| 10 \|", gate)
