"""`lettingo train --pairs` and `lettingo models ...` end to end on a tiny model (no broker: --no-publish)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lettingo.cli.errors import UserError
from trainer.cli import models_app, train
from trainer.tiny_model import build_tiny_policy, synthetic_pairs

QUICK = ["--epochs", "1", "--batch-size", "8", "--max-length", "64", "--min-pairs", "4"]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LETTINGO_HOME", str(tmp_path / "home"))
    yield CliRunner()


def app() -> typer.Typer:
    root = typer.Typer()
    root.command("train")(train)
    root.add_typer(models_app, name="models")
    return root


def test_train_from_a_file_then_list_show_rollback_promote(cli: CliRunner, tmp_path: Path) -> None:
    base = build_tiny_policy(tmp_path / "base")
    pairs_file = tmp_path / "pairs.jsonl"
    pairs = synthetic_pairs(20, seed=4)
    pairs_file.write_text("\n".join(p.model_dump_json() for p in pairs) + "\n{broken\n")
    registry = str(tmp_path / "registry")

    result = cli.invoke(
        app(), ["train", "--pairs", str(pairs_file), "--base-model", str(base), "--registry", registry, *QUICK]
    )
    assert result.exit_code == 0, result.output
    assert "21 pairs received, 20 accepted, rejected: 1 invalid_json" in result.output
    assert "profile-generator v1: champion" in result.output
    assert (tmp_path / "registry" / "profile-generator" / "v000001" / "training_curve.png").stat().st_size > 1000

    listing = cli.invoke(app(), ["models", "list", "--registry", registry])
    assert listing.exit_code == 0 and "champion" in listing.output

    shown = cli.invoke(app(), ["models", "show", "--registry", registry])
    assert shown.exit_code == 0 and '"live_status": "champion"' in shown.output
    assert '"invalid_json": 1' in shown.output

    verified = cli.invoke(app(), ["models", "verify", "1", "--registry", registry])
    assert verified.exit_code == 0 and "verified" in verified.output

    rolled = cli.invoke(app(), ["models", "rollback", "--no-publish", "--registry", registry])
    assert rolled.exit_code == 0 and "champion: none" in rolled.output

    promoted = cli.invoke(app(), ["models", "promote", "1", "--no-publish", "--registry", registry])
    assert promoted.exit_code == 0 and "v1 is the champion" in promoted.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["train", "--pairs", "missing.jsonl"], "no such file"),
        (["train", "--pairs", "{pairs}", "--watch"], "cannot be combined"),
        (["train", "--pairs", "{pairs}", "--registry", "{registry}"], "name a base model"),
        (["models", "show", "--registry", "{registry}"], "no champion"),
        (["models", "promote", "3", "--no-publish", "--registry", "{registry}"], "no version 3"),
        (["models", "rollback", "--no-publish", "--registry", "{registry}"], "no champion to roll back"),
    ],
)
def test_bad_arguments_are_one_line_user_errors(
    cli: CliRunner, tmp_path: Path, arguments: list[str], message: str
) -> None:
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("\n".join(p.model_dump_json() for p in synthetic_pairs(10)) + "\n")
    filled = [a.format(pairs=pairs_file, registry=tmp_path / "registry") for a in arguments]
    result = cli.invoke(app(), filled)
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--kind", "qlora"], "'qlora' is not one of"),
        (["--lr", "0"], "learning_rate must be positive"),
        (["--loss-type", "sigmoid,sftt"], "expected one or more of sigmoid"),
    ],
)
def test_bad_round_options_are_usage_errors(cli: CliRunner, tmp_path: Path, arguments: list[str], message: str) -> None:
    """The round's options come from DPORoundConfig: a value it rejects is a usage error naming what is wrong."""
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("\n".join(p.model_dump_json() for p in synthetic_pairs(10)) + "\n")
    result = cli.invoke(app(), ["train", "--pairs", str(pairs_file), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_watch_without_a_champion_or_a_base_model_stops_at_start(cli: CliRunner, tmp_path: Path) -> None:
    """Before, `train --watch` started, then crashed on the first batch of pairs (and again on each restart)."""
    registry = str(tmp_path / "registry")
    result = cli.invoke(app(), ["train", "--watch", "--registry", registry])
    assert isinstance(result.exception, UserError) and "no champion yet" in str(result.exception)
    result = cli.invoke(app(), ["train", "--watch", "--registry", registry, "--base-model", str(tmp_path / "none")])
    assert isinstance(result.exception, UserError) and "no such model" in str(result.exception)
