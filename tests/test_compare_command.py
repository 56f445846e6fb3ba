"""`lettingo compare`: the paper's table from explore files, through the frozen reader, with paired contrasts."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from lettingo.cli.compare_command import compare
from lettingo.cli.explore_command import explore


def _app(command) -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    return app


def test_compare_tables_two_writers_and_their_paired_difference(dataset_path: Path, frozen_reader: Path, tmp_path):
    files = {}
    for writer in ("titles", "genres"):
        files[writer] = tmp_path / f"{writer}.jsonl"
        args = [str(dataset_path), "-g", f"1*writer:{writer}", "--group", "test", "--limit", "8"]
        done = CliRunner().invoke(_app(explore), [*args, "--out", str(files[writer])])
        assert done.exit_code == 0, done.output

    out = tmp_path / "compare.json"
    args = ["-c", f"titles={files['titles']}", "-c", f"genres={files['genres']}", "--contrast", "titles=genres"]
    args += ["--dataset", str(dataset_path), "--reader", str(frozen_reader), "--draws", "2", "--resamples", "200"]
    args += ["--targets-per-user", "1"]
    done = CliRunner().invoke(_app(compare), [*args, "--json", str(out)])
    assert done.exit_code == 0, done.output
    assert "| titles |" in done.output and "titles - genres" in done.output

    result = json.loads(out.read_text())
    assert result["users"] == 8
    for task in ("ranking", "sentiment"):
        assert {"recent_only", "raw_history", "fixed_format", "titles", "genres"} <= set(result["metrics"][task])
        difference = result["differences"][task]["titles - genres"]
        assert difference["low"] <= difference["value"] <= difference["high"]
    hr1 = result["metrics"]["ranking"]["titles"]["hr@1"]
    assert 0.0 <= hr1["low"] <= hr1["value"] <= hr1["high"] <= 1.0


def test_compare_refuses_a_malformed_candidates_option(dataset_path: Path):
    done = CliRunner().invoke(_app(compare), ["-c", "no-equals-sign", "--dataset", str(dataset_path)])
    assert done.exit_code != 0
    assert "NAME=" in str(done.exception) + done.output
