"""Real DPO rounds (TRL + PEFT) on a tiny random Llama: determinism, iterative rounds, the gate, the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lettingo.records import ModelStatus
from lettingo.registry import ModelRegistry
from trainer.config import DPORoundConfig
from trainer.data import PairReport
from trainer.gate import TaskEvaluation
from trainer.pipeline import NotEnoughPairsError, run_round
from trainer.plots import CURVE_FILE
from trainer.policy import PolicySource, current_policy
from trainer.tiny_model import build_tiny_policy, synthetic_pairs
from trainer.train import train_round
from trainer.trl_cpu import score_only_completions_on_cpu

QUICK = DPORoundConfig(epochs=1, batch_size=8, max_length=64, lora_r=4, lora_alpha=8, min_pairs=4)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("tiny") / "base")


def weights(folder: Path, kind: str = "lora") -> dict[str, torch.Tensor]:
    return load_file(folder / ("adapter_model.safetensors" if kind == "lora" else "model.safetensors"))


def test_a_lora_round_is_deterministic_for_a_seed(tiny_base: Path, tmp_path: Path) -> None:
    pairs = synthetic_pairs(16)
    policy = PolicySource(base_model=str(tiny_base))
    first = train_round(pairs, policy, QUICK, tmp_path / "first")
    second = train_round(pairs, policy, QUICK, tmp_path / "second")

    assert first.steps == 2
    a, b = weights(tmp_path / "first"), weights(tmp_path / "second")
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.endswith("lora_B.weight") and a[k].abs().sum() > 0 for k in a), "the adapter did not move"
    assert [h["loss"] for h in first.log_history if "loss" in h] == [
        h["loss"] for h in second.log_history if "loss" in h
    ]
    assert (tmp_path / "first" / "tokenizer.json").exists()


def test_a_full_fine_tune_round_saves_every_weight(tiny_base: Path, tmp_path: Path) -> None:
    config = DPORoundConfig(kind="full", epochs=1, batch_size=8, max_length=64)
    result = train_round(synthetic_pairs(8), PolicySource(base_model=str(tiny_base)), config, tmp_path / "full")
    trained, base = weights(tmp_path / "full", "full"), weights(tiny_base, "full")
    assert trained.keys() == base.keys()
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    assert result.adapter_config is None


def test_a_round_can_add_the_chosen_profiles_nll_to_the_dpo_loss(tiny_base: Path, tmp_path: Path) -> None:
    pairs, policy = synthetic_pairs(8), PolicySource(base_model=str(tiny_base))
    plain = train_round(pairs, policy, DPORoundConfig(kind="full", epochs=1, max_length=64), tmp_path / "dpo")
    rpo_config = DPORoundConfig(kind="full", loss_type="sigmoid,sft", epochs=1, max_length=64)
    rpo = train_round(pairs, policy, rpo_config, tmp_path / "rpo")

    def first_loss(result: object) -> float:
        return next(h["loss"] for h in result.log_history if "loss" in h)  # type: ignore[attr-defined]

    # the first step starts from the reference, where the DPO term is log 2 for both; the sum adds the NLL
    assert first_loss(plain) == pytest.approx(0.6931, abs=1e-3)
    assert first_loss(rpo) > first_loss(plain) + 1.0


def test_on_cpu_the_fused_lm_head_scores_only_completions_and_gives_the_same_log_probs(
    tiny_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    trl_utils.add_fused_lm_head(model)
    input_ids = torch.randint(4, model.config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(0))
    labels = input_ids.clone()
    labels[:, :15] = -100  # a long prompt, a short completion
    scored_rows: list[int] = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(
        trl_utils._ChunkedLogProbFunction,
        "apply",
        lambda hidden, *a: (scored_rows.append(len(hidden)), apply(hidden, *a))[1],
    )

    def log_probs_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        out = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
        out.log_probs.sum().backward()
        return out.log_probs.detach(), [p.grad.clone() for p in model.parameters()]

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)  # TRL's own CPU behaviour
    every_position = log_probs_and_grads()
    assert score_only_completions_on_cpu() and score_only_completions_on_cpu()  # idempotent
    completions_only = log_probs_and_grads()

    assert scored_rows == [3 * 19, 3 * 5]  # shifted by one: 19 positions a row, of which 5 have a label
    assert torch.allclose(every_position[0], completions_only[0], atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(every_position[1], completions_only[1], strict=True))


def test_rounds_publish_gate_and_continue_from_the_champion_adapter(tiny_base: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    config = DPORoundConfig(
        epochs=1, batch_size=8, max_length=64, lora_r=4, lora_alpha=8, min_pairs=4, held_out_fraction=0.3
    )
    report = PairReport(received=24)
    first = run_round(
        synthetic_pairs(24, seed=1), report, registry, config, tmp_path / "work", base_model=str(tiny_base)
    )

    assert first.manifest.version == 1 and first.promoted
    assert registry.champion() == 1
    manifest = registry.verify(1)
    assert CURVE_FILE in manifest.files and "adapter_model.safetensors" in manifest.files
    # the base model is registered in the registry and named by its content id, not by a path
    assert manifest.parent is None and manifest.base_model == registry.base_models.add(tiny_base).ref
    base_folder = Path(registry.root) / "base-models" / manifest.base_model.removeprefix("base:")
    assert registry.base_model_path(manifest.base_model) == base_folder
    assert manifest.data_lineage["train_pairs"] + manifest.data_lineage["held_out_pairs"] == 24
    assert manifest.training_config["beta"] == 0.1 and manifest.library_versions["trl"]
    assert manifest.gate["compared_with"] == "base"
    assert {"pair_accuracy", "dpo_reward_margin"} <= set(manifest.gate["candidate"])
    assert manifest.metrics["train_pairs"] == manifest.data_lineage["train_pairs"]
    assert not list((tmp_path / "work").iterdir()), "staging folders must be cleaned up"

    # Round two starts from the champion's adapter, so the reference is v1, and its lineage says so.
    policy = current_policy(registry, base_model=None)
    assert policy.version == 1 and policy.adapter_path == registry.local_path(1)
    task_worse = TaskEvaluation(
        users=["u1", "u2"],
        profile_writer=lambda model_path, users: [model_path for _ in users],
        task_scorer=lambda profiles: 0.2 if "candidate-" in profiles[0] else 0.4,
    )
    second = run_round(
        synthetic_pairs(24, seed=2), PairReport(received=24), registry, config, tmp_path / "work", task=task_worse
    )
    assert second.manifest.parent == 1
    assert not second.promoted and not second.gate.passed
    assert registry.status(2) is ModelStatus.REFUSED
    assert registry.champion() == 1, "a refused candidate must not replace the champion"
    assert registry.manifest(2).gate["candidate"]["task_accuracy"] == 0.2
    assert json.loads((Path(registry.model_dir) / "v000002" / "adapter_config.json").read_text())["r"] == 4


def test_too_few_valid_pairs_train_nothing(tiny_base: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    pairs = synthetic_pairs(3)
    with pytest.raises(NotEnoughPairsError, match="fewer than the minimum"):
        run_round(pairs, PairReport(received=3), registry, QUICK, tmp_path / "work", base_model=str(tiny_base))
    assert registry.versions() == []
