"""The dashboard and the metrics, tested for real: a Prometheus server (Debian's `prometheus` package) scrapes a
running worker and `lettingo train --watch` during a short replay, evaluates the project's recording rules, and
every query of every panel of deploy/grafana/lettingo.json returns data. promtool checks both /metrics outputs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lettingo import records
from streams.settings import StreamSettings
from tests.conftest import REPO, delete_test_topics
from tests.streams_harness import WorkerProcess, catalogue_settings, free_port, produce, wait_for

pytestmark = pytest.mark.kafka

DASHBOARD = REPO / "deploy" / "grafana" / "lettingo.json"
RULES = REPO / "deploy" / "prometheus" / "rules"
ITEMS = [
    records.Item(item_id=f"i{n}", title=f"Film {n} (199{n % 10})", attributes=["Drama" if n % 2 else "Comedy"])
    for n in range(20)
]
WORKER = dict(
    worker_cold_start_after=3,
    drift_min_new_events=2,
    drift_cooldown_seconds=0,
    drift_threshold=0.05,
    explore_rate=1.0,
    explore_k=3,
    pairs_min_rewards=1,
    regen_batch_seconds=0.2,
)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `make deploy-deps` (or apt-get install prometheus) installs it")
    return path


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamSettings]:
    s = catalogue_settings(kafka_bootstrap, tmp_path_factory.mktemp("dashboard"), ITEMS)
    yield s
    delete_test_topics(s)


@pytest.fixture(scope="module")
def live(settings: StreamSettings, frozen_reader: Path, nano_model: Path) -> Iterator[tuple[WorkerProcess, int]]:
    """A worker and `lettingo train --watch` with its /metrics, launched side by side (each spends its start-up
    loading models) and stopped together. The trainer never trains here (min pairs out of reach): its rounds are
    counted as skipped."""
    worker = WorkerProcess(settings, settings.home / "worker.log", reader_path=frozen_reader, **WORKER)
    port = free_port()
    env = {**worker.env, "LETTINGO_TRAINER_METRICS_PORT": str(port)}
    trainer: subprocess.Popen | None = None
    try:
        worker.launch()
        with (settings.home / "trainer.log").open("ab") as log:
            trainer = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lettingo.cli.main",
                    "train",
                    "--watch",
                    "--wait",
                    "2",
                    "--min-pairs",
                    "100000",
                    "--group-id",
                    f"{settings.app.id}-trainer",
                    "--base-model",
                    str(nano_model),
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker.ready()
        wait_for("the trainer's /metrics", lambda: scrape(port), 60)
        yield worker, port
    finally:
        if trainer is not None:
            trainer.terminate()
        # Nothing is checked after this: SIGKILL ends the worker at once, where Faust's graceful stop spends
        # seconds (a full gc.collect() per table store).
        worker.kill()
        if trainer is not None:
            trainer.wait(30)


@pytest.fixture(scope="module")
def worker(live: tuple[WorkerProcess, int]) -> WorkerProcess:
    return live[0]


@pytest.fixture(scope="module")
def trainer(live: tuple[WorkerProcess, int]) -> int:
    """The port of the trainer's /metrics."""
    return live[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, worker: WorkerProcess, trainer: int) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("prometheus")
    for rules in RULES.glob("*.yml"):  # the project's rules, evaluated every second instead of every 15-30 s
        (folder / rules.name).write_text(rules.read_text().replace("interval: 30s", "interval: 1s"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(folder / r.name) for r in RULES.glob("*.yml")],
        "scrape_configs": [
            {"job_name": "lettingo-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}]},
            {"job_name": "lettingo-trainer", "static_configs": [{"targets": [f"127.0.0.1:{trainer}"]}]},
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    proc = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(folder / "prometheus.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus ready", lambda: get(f"{url}/-/ready") is not None, 60)
        # Scraped once before the replay: a counter's first sample is its baseline for rate().
        wait_for("both targets scraped", lambda: len(query(url, "up == 1")) == 2, 60)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read()
    except OSError:
        return None


def scrape(port: int) -> bytes | None:
    return get(f"http://127.0.0.1:{port}/metrics")


def query(url: str, expr: str) -> list:
    body = get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    return json.loads(body)["data"]["result"] if body else []


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", []) if t.get("expr")]


def replay_a_little(settings: StreamSettings) -> None:
    """Six users rate six films each, drift, explore and get rewards; one malformed message; then more ratings."""

    def rating(user: int, n: int, item: int) -> tuple[str, str, bytes]:
        event = records.Interaction(
            event_id=f"u{user}-{n}",
            user_id=f"u{user}",
            item_id=f"i{item}",
            kind="rating",
            rating=5.0 if item % 2 == user % 2 else 1.0,
            ts=1.5e9 + n,
        )
        return ("interactions", f"u{user}", event.to_bytes())

    first = [rating(u, n, (u + 2 * n) % 20) for u in range(6) for n in range(6)]
    later = [rating(u, n, (u + 2 * n + 1) % 20) for u in range(6) for n in range(6, 10)]
    asyncio.run(produce(settings, [*first, ("interactions", "u0", b"{broken")]))
    time.sleep(3)
    asyncio.run(produce(settings, later))


def test_promtool_accepts_the_worker_and_trainer_metrics(worker: WorkerProcess, trainer: int) -> None:
    for text in (scrape(worker.port), scrape(trainer)):
        check = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_every_dashboard_panel_returns_data_from_a_live_worker_and_trainer(
    settings: StreamSettings, worker: WorkerProcess, prometheus: str
) -> None:
    replay_a_little(settings)
    queries = panel_queries()
    assert len(queries) >= 20

    def missing() -> list[tuple[str, str]] | None:
        empty = [(title, expr) for title, expr in queries if not query(prometheus, expr)]
        return empty or None

    deadline = time.time() + 120
    while (empty := missing()) and time.time() < deadline:
        time.sleep(1)  # Prometheus scrapes and evaluates the rules every second
    assert not empty, f"panels with no data: {empty}"
    targets = json.loads(get(f"{prometheus}/api/v1/targets"))["data"]["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {"lettingo-worker": "up", "lettingo-trainer": "up"}
    assert os.path.exists(settings.home / "worker.log")
