"""One whole round: validate pairs, train from the current policy, draw the curve, gate, publish, promote.

Every round leaves a version in the registry: a candidate that passed the gate becomes champion, one that did
not is kept with status ``refused`` and its comparison, so the decision can always be inspected.
"""

from __future__ import annotations

import logging
import platform
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lettingo.errors import InputError
from lettingo.records import ModelStatus, ModelVersion, PreferencePair
from lettingo.registry import Manifest, ManifestDraft, ModelRegistry
from trainer.config import DPORoundConfig
from trainer.data import PairReport, longest_pair, render_pairs, split_held_out, tokenizer_counter, validate_pairs
from trainer.gate import GateResult, PairLogps, TaskEvaluation, run_gate
from trainer.plots import CURVE_FILE, plot_training_curve
from trainer.policy import current_policy
from trainer.train import RoundResult, train_round

log = logging.getLogger(__name__)

_LIBRARIES = ("lettingo", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers")


class NotEnoughPairsError(InputError):
    """Too few valid training pairs for a round; nothing was trained."""


@dataclass
class RoundOutcome:
    manifest: Manifest
    gate: GateResult
    report: PairReport
    result: RoundResult
    promoted: bool


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _default_pair_logps() -> PairLogps:
    from trainer.pair_scoring import pair_logps

    return pair_logps


def run_round(
    pairs: Sequence[PreferencePair],
    report: PairReport,
    registry: ModelRegistry,
    config: DPORoundConfig,
    work_dir: Path,
    *,
    base_model: str | None = None,
    task: TaskEvaluation | None = None,
    pair_logps: PairLogps | None = None,
    lineage: dict[str, Any] | None = None,
    on_champion: Callable[[ModelVersion], None] | None = None,
    show_progress: bool = False,
) -> RoundOutcome:
    """Run a round on ``pairs`` (``report`` already counts what was rejected while reading them)."""
    from transformers import AutoConfig, AutoTokenizer

    policy = current_policy(registry, base_model)
    tokenizer = AutoTokenizer.from_pretrained(policy.tokenizer_path)
    pairs = render_pairs(pairs, tokenizer)
    count = tokenizer_counter(tokenizer)
    max_length = config.max_length
    if max_length is None:  # the data's longest pair, within the model's context
        context = AutoConfig.from_pretrained(policy.base_model).max_position_embeddings
        max_length = max(1, min(context, longest_pair(pairs, count)))
        config = replace(config, max_length=max_length)
        log.info("max_length %d: the longest pair, up to the model's context of %d", max_length, context)
    valid = validate_pairs(pairs, count, max_length, report)
    train_pairs, held_out = split_held_out(valid, config.held_out_fraction, config.seed)
    log.info("%s; %d for training, %d held out", report.summary(), len(train_pairs), len(held_out))
    if len(train_pairs) < config.min_pairs:
        raise NotEnoughPairsError(
            f"{len(train_pairs)} training pairs is fewer than the minimum of {config.min_pairs} ({report.summary()})"
        )

    staging = work_dir / f"candidate-{uuid.uuid4().hex[:8]}"
    try:
        result = train_round(train_pairs, policy, config, staging, show_progress=show_progress)
        parent = f"v{policy.version}" if policy.version else "base"
        plot_training_curve(result.log_history, staging / CURVE_FILE, title=f"{registry.name}: DPO from {parent}")
        gate = run_gate(
            str(staging),
            policy.model_path,
            config.gate.tolerances(),
            task=task,
            held_out_pairs=held_out,
            pair_logps=pair_logps or _default_pair_logps(),
            beta=config.beta,
        )
        metrics = result.final_metrics()
        metrics.update({f"gate_{k}": v for k, v in gate.candidate.items()})
        draft = ManifestDraft(
            kind=config.kind,
            base_model=policy.base_ref or result.base_model,
            adapter_config=result.adapter_config,
            training_config=config.to_dict(),
            data_lineage={
                **report.to_dict(),
                "train_pairs": len(train_pairs),
                "held_out_pairs": len(held_out),
                **(lineage or {}),
            },
            metrics=metrics,
            gate={**gate.to_dict(), "tolerances": config.gate.tolerances(), "compared_with": parent},
            parent=policy.version,
            library_versions=library_versions(),
            status=ModelStatus.CANDIDATE if gate.passed else ModelStatus.REFUSED,
        )
        manifest = registry.publish(staging, draft)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    if gate.passed:
        registry.promote(manifest.version)
        if on_champion is not None:
            on_champion(registry.model_version_record(manifest.version))
    log.info("%s v%d: %s", registry.name, manifest.version, gate.summary())
    return RoundOutcome(manifest, gate, report, result, promoted=gate.passed)
