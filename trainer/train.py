"""One DPO round with TRL's DPOTrainer: LoRA on the current policy (or a full fine-tune), deterministic per seed.

The reference model is the current policy: for a LoRA champion, TRL trains the loaded adapter and keeps a frozen
copy of it as the reference; for a new adapter the reference is the base model (adapter disabled); for a full
fine-tune the reference log-probs are computed from the starting weights before the first step.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lettingo.records import PreferencePair
from trainer.config import DPORoundConfig
from trainer.data import to_dpo_rows
from trainer.policy import PolicyError, PolicySource
from trainer.trl_cpu import score_only_completions_on_cpu

log = logging.getLogger(__name__)


@dataclass
class RoundResult:
    output_dir: Path
    kind: str
    base_model: str
    train_pairs: int
    steps: int
    train_seconds: float
    log_history: list[dict[str, float]] = field(default_factory=list)
    adapter_config: dict[str, Any] | None = None

    @property
    def pairs_per_second(self) -> float:
        epochs = max((h.get("epoch", 0.0) for h in self.log_history), default=0.0)
        return self.train_pairs * epochs / self.train_seconds if self.train_seconds else 0.0

    def final_metrics(self) -> dict[str, float]:
        """The last logged value of each training metric, plus the run summary."""
        metrics: dict[str, float] = {}
        for entry in self.log_history:
            for key, value in entry.items():
                if isinstance(value, int | float) and key not in ("epoch", "step"):
                    metrics[key.replace("/", "_")] = float(value)
        metrics["train_pairs"] = float(self.train_pairs)
        metrics["train_seconds"] = round(self.train_seconds, 3)
        return metrics


def build_lora_config(config: DPORoundConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _starting_model(policy: PolicySource, config: DPORoundConfig) -> tuple[Any, Any, Any]:
    """(model, tokenizer, peft_config or None) for the round, starting from the current policy."""
    from trainer.policy import load_policy

    if config.kind == "lora" and policy.kind == "full":
        raise PolicyError(
            f"the champion v{policy.version} is a full fine-tune: train a full round (kind='full') on top of it"
        )
    if config.kind == "lora":
        if policy.adapter_path:
            model, tokenizer = load_policy(policy.adapter_path, policy.base_model, trainable=True)
            return model, tokenizer, None
        model, tokenizer = load_policy(policy.base_model, trainable=True)
        return model, tokenizer, build_lora_config(config)
    model, tokenizer = load_policy(policy.model_path, policy.base_model, trainable=True)
    if policy.adapter_path:
        model = model.merge_and_unload()  # a full round on a LoRA champion starts from its merged weights
    return model, tokenizer, None


def _dpo_config(config: DPORoundConfig, work_dir: Path, show_progress: bool) -> Any:
    import torch
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(work_dir),
        beta=config.beta,
        loss_type=config.loss_types,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        max_length=config.max_length,
        seed=config.seed,
        data_seed=config.seed,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
        bf16=config.bf16,
        fp16=False,
        gradient_checkpointing=config.gradient_checkpointing,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
        disable_tqdm=not show_progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def train_round(
    pairs: Sequence[PreferencePair],
    policy: PolicySource,
    config: DPORoundConfig,
    output_dir: Path,
    show_progress: bool = False,
    callbacks: Sequence[Any] = (),
) -> RoundResult:
    """Train one DPO round on ``pairs`` from ``policy``; save the adapter (or model) and tokenizer to ``output_dir``."""
    import datasets
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOTrainer

    if not pairs:
        raise ValueError("a DPO round needs at least one pair")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if show_progress:
        datasets.enable_progress_bars()
    else:
        datasets.disable_progress_bars()
    if config.num_threads:
        import torch

        torch.set_num_threads(config.num_threads)
    score_only_completions_on_cpu()
    set_seed(config.seed)  # before the model is built: a new LoRA adapter is initialised at random
    model, tokenizer, peft_config = _starting_model(policy, config)
    ref_model = None
    if config.kind == "full" and not config.precompute_ref_log_probs:
        ref_model = copy.deepcopy(model).eval()  # TRL would otherwise reload the base from its path

    work_dir = output_dir.parent / f".work-{output_dir.name}"
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=_dpo_config(config, work_dir, show_progress),
        train_dataset=Dataset.from_list(to_dpo_rows(pairs)),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=list(callbacks),
    )
    if not show_progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    try:
        trainer.train()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    seconds = time.perf_counter() - started

    output_dir.mkdir(parents=True, exist_ok=True)
    adapter_config = None
    if config.kind == "lora":
        trainer.model.save_pretrained(str(output_dir), selected_adapters=["default"])
        adapter_config = trainer.model.peft_config["default"].to_dict()
        adapter_config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in adapter_config.items()}
    else:
        trainer.model.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    history = [dict(entry) for entry in trainer.state.log_history]
    log.info("DPO round: %d pairs, %d steps, %.1f s", len(pairs), trainer.state.global_step, seconds)
    return RoundResult(
        output_dir=output_dir,
        kind=config.kind,
        base_model=policy.base_model,
        train_pairs=len(pairs),
        steps=trainer.state.global_step,
        train_seconds=seconds,
        log_history=history,
        adapter_config=adapter_config,
    )
