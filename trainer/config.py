"""One dataclass configures a DPO round; its defaults are DESIGN's measured recipe on the nano model."""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal


@dataclass(frozen=True)
class GateConfig:
    """How much worse than the champion a candidate may be and still be published (absolute differences).

    Every metric is "higher is better"; a metric missing on either side is reported and not compared.
    """

    task_accuracy_tolerance: float = 0.01
    """f_Rec accuracy on the validation users may drop by at most this (0.01 = one point)."""
    pair_accuracy_tolerance: float = 0.02
    """Held-out preference accuracy (log p(chosen) > log p(rejected)) may drop by at most this."""
    pair_margin_tolerance: float = 0.0
    """The held-out mean beta-scaled log-ratio margin may drop by at most this (0 = it must not drop)."""

    def tolerances(self) -> dict[str, float]:
        return {
            "task_accuracy": self.task_accuracy_tolerance,
            "pair_accuracy": self.pair_accuracy_tolerance,
            "pair_margin": self.pair_margin_tolerance,
        }


@functools.cache
def trl_loss_types() -> tuple[str, ...]:
    """The loss types ``trl.DPOConfig`` accepts, read from its own field help ("Possible values are: `'sigmoid'`,
    ..."), so a TRL upgrade that adds or drops one needs no edit here (tests/test_dpo_options.py checks the parse)."""
    from trl import DPOConfig

    help_text = next(f for f in fields(DPOConfig) if f.name == "loss_type").metadata["help"]
    possible = help_text.partition("Possible values are:")[2].partition(". ")[0]
    return tuple(re.findall(r"`'([a-z_]+)'`", possible))


def _option(default: Any, help: str, cli: str | bool = False) -> Any:
    """A field with TRL-style ``metadata["help"]``; ``cli`` exposes it on ``lettingo train`` (True: --field-name,
    a string: that option name)."""
    metadata: dict[str, Any] = {"help": help}
    if cli:
        metadata["cli"] = cli
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DPORoundConfig:
    """A DPO round. The defaults reproduce DESIGN's "What it took for DPO to help on CPU" (nano, 2 cores).

    Every field's help is in its ``metadata["help"]``; the fields marked ``cli`` are ``lettingo train``'s options,
    generated from them (``lettingo.cli.dataclass_options``)."""

    kind: Literal["lora", "full"] = _option(
        "lora", "Train a LoRA adapter (lora) or fine-tune every weight (full).", True
    )
    beta: float = _option(0.1, "DPO's beta: how far the policy may move from the reference (higher = less).", True)
    loss_type: str = _option(
        "sigmoid",
        "TRL loss type(s), comma-separated, summed with equal weights; sigmoid is the paper's DPO loss, sigmoid,sft "
        "adds the chosen profiles' negative log-likelihood (RPO).",
        True,
    )
    learning_rate: float = _option(
        5e-4, "Learning rate; 5e-4 moved the nano model, 2e-4 did nothing (DESIGN). Lower it for large models.", "--lr"
    )
    epochs: int = _option(2, "Epochs over the round's pairs.", True)
    batch_size: int = _option(8, "Pairs per step.", True)
    max_length: int | None = _option(
        None,
        "Tokens of prompt + completion; longer pairs are rejected (counted) before training, never truncated "
        "[the round's longest pair, up to the model's context].",
        True,
    )
    seed: int = _option(0, "Seed; a round is deterministic on CPU for a seed.", True)
    precompute_ref_log_probs: bool = _option(
        True, "Compute the reference log-probs once before training, so no second model is held in memory."
    )
    bf16: bool = _option(False, "bf16 is off: on CPU it was slower and changed results; turn it on for GPUs.")
    gradient_checkpointing: bool = _option(False, "TRL turns it on by default; for small models it only costs time.")
    lora_r: int = _option(16, "LoRA rank.")
    lora_alpha: int = _option(32, "LoRA alpha (the adapter's scale is alpha / r).")
    lora_dropout: float = _option(0.0, "LoRA dropout.")
    lora_target_modules: tuple[str, ...] = _option(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), "Modules LoRA adapts."
    )
    held_out_fraction: float = _option(
        0.1, "Share of users whose pairs are held out for the gate (split by user: no user is on both sides)."
    )
    min_pairs: int = _option(8, "A round with fewer valid training pairs is not run.", True)
    logging_steps: int = _option(1, "Log the training metrics every this many steps.")
    num_threads: int | None = _option(
        None, "CPU threads for torch (None: torch's default); on a busy shared machine 1 was 3x faster than 2."
    )
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        if self.kind not in ("lora", "full"):
            raise ValueError(f"kind must be 'lora' or 'full', not {self.kind!r}")
        for name in ("beta", "learning_rate", "epochs", "batch_size", "max_length", "lora_r"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        known = trl_loss_types()
        unknown = [t for t in self.loss_types if t not in known]
        if unknown or not self.loss_types:
            raise ValueError(f"loss_type {self.loss_type!r}: expected one or more of {', '.join(known)}")
        if not 0 <= self.held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in [0, 1), not {self.held_out_fraction!r}")

    @property
    def loss_types(self) -> list[str]:
        return [t.strip() for t in self.loss_type.split(",") if t.strip()]

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["lora_target_modules"] = list(self.lora_target_modules)
        return values
