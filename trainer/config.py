"""One dataclass configures a DPO round; its defaults are DESIGN's measured recipe on the nano model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


# trl.DPOConfig's loss types (TRL 1.16), checked here so a typo fails before the model is loaded
TRL_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)


@dataclass(frozen=True)
class DPORoundConfig:
    """A DPO round. The defaults reproduce DESIGN's "What it took for DPO to help on CPU" (nano, 2 cores)."""

    kind: Literal["lora", "full"] = "lora"
    """Train a LoRA adapter (default) or fine-tune every weight."""
    beta: float = 0.1
    """DPO's beta: how far the policy may move from the reference (higher = less)."""
    loss_type: str = "sigmoid"
    """TRL loss type; "sigmoid" is the paper's DPO loss. Several, comma-separated ("sigmoid,sft"), are summed
    with equal weights; "sft" adds the chosen profiles' negative log-likelihood (RPO)."""
    learning_rate: float = 5e-4
    """5e-4 moved the nano model; 2e-4 did nothing (DESIGN). Lower it for large models."""
    epochs: int = 2
    batch_size: int = 8
    max_length: int | None = None
    """Tokens of prompt + completion; longer pairs are rejected (counted) before training, never truncated.
    None: the round's longest pair, up to the model's context (a SmolLM2 prompt over 70 history lines is about
    2,000 tokens; the old fixed 512 rejected every such pair)."""
    seed: int = 0
    precompute_ref_log_probs: bool = True
    """Compute the reference log-probs once before training, so no second model is held in memory."""
    bf16: bool = False
    """bf16 is off: on CPU it was slower and changed results; turn it on for GPUs that support it."""
    gradient_checkpointing: bool = False
    """TRL turns it on by default; for small models it only costs time."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    held_out_fraction: float = 0.1
    """Share of users whose pairs are held out for the gate (split by user, so no user is on both sides)."""
    min_pairs: int = 8
    """A round with fewer valid training pairs is not run."""
    logging_steps: int = 1
    num_threads: int | None = None
    """CPU threads for torch (None: torch's default). On a busy shared machine 1 thread was 3x faster than 2."""
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        if self.kind not in ("lora", "full"):
            raise ValueError(f"kind must be 'lora' or 'full', not {self.kind!r}")
        for name in ("beta", "learning_rate", "epochs", "batch_size", "max_length", "lora_r"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        unknown = [t for t in self.loss_types if t not in TRL_LOSS_TYPES]
        if unknown or not self.loss_types:
            raise ValueError(f"loss_type {self.loss_type!r}: expected one or more of {', '.join(TRL_LOSS_TYPES)}")
        if not 0 <= self.held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in [0, 1), not {self.held_out_fraction!r}")

    @property
    def loss_types(self) -> list[str]:
        return [t.strip() for t in self.loss_type.split(",") if t.strip()]

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["lora_target_modules"] = list(self.lora_target_modules)
        return values
