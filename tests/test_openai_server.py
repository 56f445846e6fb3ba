"""The ``openai`` backend against a real OpenAI-compatible server (issue 19, item 4): ``transformers serve`` on the
quick nano model, run locally. Exploration goes through it; a stopped server is a timeout, a killed one a
connection error, both a :class:`GeneratorError` after the client's retries; and a worker whose policy is the
server retries a failed batch, re-queues it, and dead-letters it in the end: every profile request becomes a
profile or a dead letter, none is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lettingo import records
from lettingo.cli.main import _register_core, _register_plugins, app
from lettingo.data import load_dataset, split_dataset
from lettingo.generators import GeneratorError, make_generator
from lettingo.generators.decoding import loop_start
from lettingo.prompts.profile import profile_prompt
from tests.conftest import DATASET, REPO, delete_test_topics
from tests.streams_harness import catalogue_settings, free_port, produce, running_worker, topic_records, wait_for

pytestmark = pytest.mark.kafka


class Server:
    """``transformers serve MODEL`` as a child process on a free local port."""

    def __init__(self, model: Path, log: Path) -> None:
        self.model, self.port, self.log = model, free_port(), log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def spec(self, **options: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"openai:{self.url}#{self.model}" + (f"?{query}" if query else "")

    def start(self, timeout_s: float = 120) -> Server:
        command = [
            str(REPO / ".venv" / "bin" / "transformers"),
            "serve",
            str(self.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--device",
            "cpu",
            "--dtype",
            "float32",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"transformers serve did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture(scope="module")
def server(nano_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(nano_model, tmp_path_factory.mktemp("serve") / "serve.log").start()
    yield s
    s.kill()


def test_exploration_goes_through_the_server(server: Server, tmp_path: Path) -> None:
    _register_core()
    _register_plugins()
    out = tmp_path / "cands.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "explore",
            str(DATASET),
            "-g",
            f"2*{server.spec(timeout=60)}",
            "--group",
            "validation",
            "--limit",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3
    for line in lines:
        candidates = line["candidates"]
        assert [c["generator"] for c in candidates] == ["openai", "openai"]
        assert all(c["text"].strip() and c["prompt_tokens"] > 100 and loop_start(c["text"]) is None for c in candidates)


def test_a_stopped_server_times_out_and_a_killed_one_refuses_both_as_generator_errors(
    nano_model: Path, tmp_path: Path
) -> None:
    server = Server(nano_model, tmp_path / "serve.log").start()
    dataset = load_dataset(DATASET)
    prompt = profile_prompt(split_dataset(dataset).cases(dataset, "validation")[0].long_history, dataset.items)
    generator = make_generator(server.spec(timeout=3, retries=1))
    try:
        [[ok]] = generator.generate([prompt], n=1, max_new_tokens=16)
        assert ok.text
        os.killpg(server.proc.pid, signal.SIGSTOP)  # alive but silent: every try times out
        started = time.perf_counter()
        with pytest.raises(GeneratorError, match="Timeout"):
            generator.generate([prompt], n=1, max_new_tokens=16)
        assert time.perf_counter() - started < 30  # two tries of 3 s, with the client's backoff
        os.killpg(server.proc.pid, signal.SIGCONT)
        server.kill()
        with pytest.raises(GeneratorError, match="Connection"):
            generator.generate([prompt], n=2, max_new_tokens=16)
    finally:
        generator.close()
        server.kill()


def test_a_worker_retries_a_killed_servers_batch_then_dead_letters_it_and_loses_no_request(
    nano_model: Path, frozen_reader: Path, kafka_bootstrap: str, tmp_path: Path
) -> None:
    dataset = load_dataset(DATASET)
    users = {u: dataset.ratings_by_user[u][:4] for u in ("1", "2", "3")}
    item_ids = {r.item_id for rs in users.values() for r in rs}
    items = [
        records.Item(
            item_id=i,
            title=dataset.items[i].title,
            attributes=list(dataset.items[i].attributes),
            year=dataset.items[i].year,
        )
        for i in item_ids
    ]
    settings = catalogue_settings(kafka_bootstrap, tmp_path, items)
    server = Server(nano_model, tmp_path / "serve.log").start()

    def send(user: str) -> None:
        events = [
            records.Interaction(
                event_id=f"{user}-{n}", user_id=user, item_id=r.item_id, kind="rating", rating=r.rating, ts=float(r.ts)
            )
            for n, r in enumerate(users[user])
        ]
        asyncio.run(produce(settings, [("interactions", user, e.to_bytes()) for e in events]))

    def values(topic: str, record_type) -> list:
        return [record_type.from_bytes(r.value) for r in topic_records(settings, topic) if r.value is not None]

    try:
        with running_worker(
            settings,
            frozen_reader,
            worker_policy=server.spec(timeout=5, retries=0),
            explore_rate=0.0,
            worker_cold_start_after=4,
            regen_retries=2,
            regen_backoff_seconds=0.2,
            regen_max_attempts=2,
            regen_timeout_seconds=30,
            regen_batch_seconds=0.2,
        ) as worker:
            send("1")
            [profile] = wait_for("a profile through the server", lambda: values("profiles", records.Profile), 120)
            assert profile.generator == "openai" and profile.text.strip()

            server.kill()
            send("2")
            send("3")

            def failed() -> list[records.DeadLetter] | None:
                letters = [d for d in values("dead-letters", records.DeadLetter) if d.reason == "generation_failed"]
                return letters if len(letters) >= 2 else None

            letters = wait_for("both requests dead-lettered", failed, 180)
            assert {json.loads(d.payload)["user_id"] for d in letters} == {"2", "3"}
            assert all("openai" in d.error for d in letters)
            # every request: served, or retried (attempt 1) and dead-lettered; none lost
            requests = values("profile-requests", records.ProfileRequest)
            first = {(r.user_id, r.history_ref) for r in requests if r.attempt == 0}
            requeued = {(r.user_id, r.history_ref) for r in requests if r.attempt == 1}
            served = {(p.user_id, p.history_ref) for p in values("profiles", records.Profile)}
            dead_requests = [records.ProfileRequest.model_validate_json(d.payload) for d in letters]
            dead = {(r.user_id, r.history_ref) for r in dead_requests}
            assert first == served | dead and not served & dead
            assert requeued == dead  # each failed request was queued once more before it was given up
            assert "lettingo_regeneration_failures_total" in worker.metrics()
    finally:
        server.kill()
        delete_test_topics(settings)
