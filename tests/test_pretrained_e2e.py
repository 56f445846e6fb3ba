"""A real pretrained model through every stage (issue 19, item 2): SmolLM2-135M-Instruct, imported from its GGUF
file, explores through its chat template within a prompt token budget, its candidates are rewarded by the frozen
f_Rec and paired, a LoRA DPO round trains with a ``max_length`` derived from the pairs, the gate compares it on
validation users, the version is published with its base model by content id, and a worker serving SmolLM2
hot-swaps to the new adapter and writes a grounded, non-looping profile with it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lettingo import records
from lettingo.cli.main import _register_core, _register_plugins, app
from lettingo.data import load_dataset
from lettingo.generators.decoding import loop_start
from lettingo.registry import ModelRegistry
from tests.conftest import DATASET, delete_test_topics
from tests.streams_harness import catalogue_settings, produce, running_worker, topic_records, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.pretrained]
PROMPT_TOKENS = 360  # about 9 history lines: what 2 cores can explore and train on in a test


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    _register_core()
    _register_plugins()
    return CliRunner()


def run(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def round_dir(cli: CliRunner, smollm2: Path, frozen_reader: Path, tmp_path_factory, monkeypatch_module) -> Path:
    """explore -> evaluate -> pairs -> train (LoRA DPO, gated on 2 validation users), by the CLI."""
    out = tmp_path_factory.mktemp("pretrained")
    for key, value in {
        "LETTINGO_DATASET": str(DATASET),
        "LETTINGO_GATE_USERS": "2",
        "LETTINGO_WORKER_HISTORY_MAX": "9",
        "LETTINGO_READER_PATH": str(frozen_reader),
        "LETTINGO_HOME": str(out / "home"),
        "LETTINGO_CACHE_DIR": str(Path(__file__).resolve().parents[1] / ".lettingo" / "cache"),
    }.items():
        monkeypatch_module.setenv(key, value)
    sources = ["-g", f"2*hf:{smollm2}", "-g", "2*writer:mix"]
    run(
        cli,
        "explore",
        str(DATASET),
        *sources,
        "--group",
        "train",
        "--limit",
        "3",
        "--max-prompt-tokens",
        str(PROMPT_TOKENS),
        "--batch-size",
        "3",
        "--out",
        str(out / "cands.jsonl"),
    )
    run(
        cli,
        "evaluate",
        str(out / "cands.jsonl"),
        "--dataset",
        str(DATASET),
        "--reader",
        str(frozen_reader),
        "--targets-per-user",
        "5",
        "--draws",
        "3",
        "--out",
        str(out / "rewards.jsonl"),
    )
    run(cli, "pairs", str(out / "rewards.jsonl"), "--dataset", str(DATASET), "--out", str(out / "pairs.jsonl"))
    output = run(
        cli,
        "train",
        "--pairs",
        str(out / "pairs.jsonl"),
        "--base-model",
        str(smollm2),
        "--registry",
        str(out / "registry"),
        "--kind",
        "lora",
        "--lr",
        "1e-4",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--min-pairs",
        "4",
        "--task-eval",
        "trainer.task_eval:validation_task",
        "--no-publish",
    )
    (out / "train.log").write_text(output)
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def test_explore_uses_the_chat_template_within_the_token_budget(round_dir: Path, smollm2: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in tokenizer.chat_template
    lines = [json.loads(line) for line in (round_dir / "cands.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for line in lines:
        model = [c for c in line["candidates"] if c["generator"] == "hf"]
        assert model and all(0 < c["prompt_tokens"] <= PROMPT_TOKENS for c in model)
        assert 0 < line["prompt"].count("\n- ") < 20  # the most recent lines of H_u, not all 70
        assert all(c["text"].strip() and loop_start(c["text"]) is None and "<" not in c["text"] for c in model)


def test_a_lora_round_trains_gates_and_publishes_with_a_portable_base(round_dir: Path, smollm2: Path) -> None:
    registry = ModelRegistry(round_dir / "registry")
    manifest = registry.manifest(1)
    assert manifest.kind == "lora" and manifest.base_model.startswith("base:")
    assert registry.base_model_path(manifest.base_model).name == smollm2.name  # the same content id
    lineage = manifest.data_lineage
    assert lineage["train_pairs"] >= 4 and "too_long" not in lineage["rejected"]
    assert manifest.training_config["max_length"] > PROMPT_TOKENS  # derived from the pairs, not a fixed 512
    gate = {c["name"]: c for c in manifest.gate["comparisons"]}
    assert gate["task_accuracy"]["units"] == 2 and "ci_low" in gate["task_accuracy"]
    assert "gate" in (round_dir / "train.log").read_text()


def test_a_worker_serving_smollm2_hot_swaps_to_the_adapter(
    round_dir: Path, smollm2: Path, frozen_reader: Path, kafka_bootstrap: str
) -> None:
    registry = ModelRegistry(round_dir / "registry")
    if registry.champion() != 1:  # a refused round still shows the swap; the gate's verdict is the test above's
        registry.promote(1, force=True)
    dataset = load_dataset(DATASET)
    user = "1"
    ratings = dataset.ratings_by_user[user][:6]
    items = [
        records.Item(item_id=i.item_id, title=i.title, attributes=list(i.attributes), year=i.year)
        for i in (dataset.items[r.item_id] for r in ratings)
    ]
    (round_dir / "worker-home").mkdir(exist_ok=True)
    settings = catalogue_settings(kafka_bootstrap, round_dir / "worker-home", items)
    try:
        with running_worker(
            settings,
            frozen_reader,
            worker_policy=f"hf:{smollm2}",
            explore_rate=0.0,
            worker_cold_start_after=5,
            worker_history_max=9,
            regen_timeout_seconds=240,
        ) as worker:
            assert worker.health()["model_version"] == "default"
            record = registry.model_version_record(1)
            asyncio.run(produce(settings, [("model-versions", registry.name, record.to_bytes())]))
            wait_for("the adapter served", lambda: worker.health()["model_version"] == "profile-generator:1", 240)
            events = [
                records.Interaction(
                    event_id=f"e{n}", user_id=user, item_id=r.item_id, kind="rating", rating=r.rating, ts=float(r.ts)
                )
                for n, r in enumerate(ratings)
            ]
            asyncio.run(produce(settings, [("interactions", user, e.to_bytes()) for e in events]))

            def served():
                return [records.Profile.from_bytes(r.value) for r in topic_records(settings, "profiles")]

            [profile] = wait_for("a profile from the adapter", served, 300)
            assert profile.model_version == "profile-generator:1" and profile.generator == "hf"
            assert profile.text.strip() and loop_start(profile.text) is None
    finally:
        delete_test_topics(settings)
