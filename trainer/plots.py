"""The training curve of a round (loss, reward accuracy, reward margins) as a PNG beside the manifest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt

CURVE_FILE = "training_curve.png"
_PANELS = (
    ("loss", ("loss",)),
    ("reward accuracy", ("rewards/accuracies",)),
    ("rewards and margin", ("rewards/margins", "rewards/chosen", "rewards/rejected")),
)


def plot_training_curve(log_history: Sequence[dict[str, Any]], target: Path, title: str = "DPO round") -> Path:
    """Draw the per-step training logs of a TRL run; panels with no data say so instead of being empty."""
    steps = [entry for entry in log_history if "loss" in entry and "step" in entry]
    figure, axes = plt.subplots(1, len(_PANELS), figsize=(12, 3.6))
    for axis, (panel_title, keys) in zip(axes, _PANELS, strict=True):
        drawn = False
        for key in keys:
            points = [(e["step"], float(e[key])) for e in steps if key in e]
            if points:
                axis.plot(*zip(*points, strict=True), marker="." if len(points) < 30 else None, label=key)
                drawn = True
        if not drawn:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
        elif len(keys) > 1:
            axis.axhline(0.0, color="grey", linewidth=0.5)
            axis.legend(fontsize=7)
        axis.set_title(panel_title)
        axis.set_xlabel("step")
    figure.suptitle(title)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target
