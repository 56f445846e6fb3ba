"""Reading profiles back against their history: the writers state only true figures and titles, a stored
prompt text is read back into its entries, and ``lettingo quality`` measures an explore file."""

from __future__ import annotations

import random
from pathlib import Path

from typer.testing import CliRunner

from lettingo.cli.main import _register_core, _register_plugins, app
from lettingo.data import LabelScheme, load_dataset, split_dataset
from lettingo.profile_quality import prompt_from_text, quality_report
from lettingo.prompts.profile import profile_prompt
from lettingo.writers import WRITERS


def test_every_writer_states_only_true_figures_and_titles(dataset_path: Path) -> None:
    dataset = load_dataset(dataset_path)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    cases = split_dataset(dataset).cases(dataset, "validation")[:40]
    prompts = [profile_prompt(c.long_history, dataset.items, labels) for c in cases]
    rng = random.Random(0)
    for name, writer in WRITERS.items():
        report = quality_report([(p, [writer(p.entries, rng) for _ in range(3)]) for p in prompts])
        assert report.well_formed == 1.0 and report.repeated_4gram_rate < 0.02, name
        assert report.factual_consistency in (None, 1.0), (name, report)
    assert prompt_from_text(prompts[0].text, prompts[0].user_id, dataset) == prompts[0]
    assert prompt_from_text(prompts[0].text.replace('"', "'"), prompts[0].user_id, dataset) is None


def test_the_quality_command_reads_an_explore_file(dataset_path: Path, tmp_path: Path) -> None:
    _register_core()
    _register_plugins()
    cli = CliRunner()
    out = tmp_path / "cands.jsonl"
    explored = cli.invoke(
        app,
        [
            "explore",
            str(dataset_path),
            "-g",
            "2*writer:strictness",
            "--group",
            "validation",
            "--limit",
            "5",
            "--out",
            str(out),
        ],
    )
    assert explored.exit_code == 0, explored.output
    result = cli.invoke(app, ["quality", str(out), "--dataset", str(dataset_path), "--show", "1"])
    assert result.exit_code == 0, result.output
    assert "cands.jsonl writer:strictness (10 profiles): distinct" in result.output
    assert "figures true 100 %" in result.output and "factual consistency 100 %" in result.output
