"""The DPO round's options are declared once (trainer.config.DPORoundConfig) and `lettingo train` derives its
options from the fields; TRL's loss names are read from TRL."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from lettingo.cli.dataclass_options import cli_fields, option_name, options_from_dataclass
from trainer.cli import train
from trainer.config import DPORoundConfig, trl_loss_types


def test_the_loss_names_are_trls_own() -> None:
    names = trl_loss_types()
    assert {"sigmoid", "ipo", "hinge", "sft", "sigmoid_norm", "apo_zero"} <= set(names)
    assert len(names) == len(set(names)) >= 10


def test_every_field_has_help() -> None:
    assert all(f.metadata.get("help") for f in fields(DPORoundConfig) if f.name != "gate")


def test_train_keeps_its_option_names() -> None:
    assert [option_name(f) for f in cli_fields(DPORoundConfig)] == [
        "--kind",
        "--beta",
        "--loss-type",
        "--lr",
        "--epochs",
        "--batch-size",
        "--max-length",
        "--seed",
        "--min-pairs",
    ]
    root = typer.Typer()
    root.command("train")(train)
    help_text = CliRunner().invoke(root, ["train", "--help"], terminal_width=200).output
    for f in cli_fields(DPORoundConfig):
        assert option_name(f) in help_text
    assert "moved the nano model" in help_text  # the field's help, not a second copy


@dataclass(frozen=True)
class Example:
    size: int = field(default=3, metadata={"help": "How many.", "cli": True})
    mode: Literal["a", "b"] = field(default="a", metadata={"help": "Which one.", "cli": "--which"})
    ratio: float | None = field(default=None, metadata={"help": "A ratio.", "cli": True})
    hidden: str = field(default="kept", metadata={"help": "Not an option."})

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"size must be positive, not {self.size}")


def _app() -> tuple[typer.Typer, list[object]]:
    seen: list[object] = []
    root = typer.Typer()

    @root.command()
    @options_from_dataclass(Example, param="example")
    def run(name: str = typer.Option("x", "--name"), *, example: Example) -> None:
        seen.append((name, example))

    @root.command()
    def other() -> None:  # a second command keeps `run` a named subcommand
        pass

    return root, seen


def test_the_command_receives_one_built_instance() -> None:
    root, seen = _app()
    result = CliRunner().invoke(root, ["run", "--name", "y", "--size", "5", "--which", "b", "--ratio", "0.5"])
    assert result.exit_code == 0, result.output
    assert seen == [("y", Example(size=5, mode="b", ratio=0.5))]
    assert CliRunner().invoke(root, ["run"]).exit_code == 0
    assert seen[-1] == ("x", Example())


def test_rejected_values_are_usage_errors() -> None:
    root, _ = _app()
    bad_choice = CliRunner().invoke(root, ["run", "--which", "c"])
    assert bad_choice.exit_code == 2 and "'c' is not one of 'a', 'b'" in bad_choice.output
    rejected = CliRunner().invoke(root, ["run", "--size", "0"])
    assert rejected.exit_code == 2 and "size must be positive, not 0" in rejected.output
    assert "--hidden" not in CliRunner().invoke(root, ["run", "--help"]).output


def test_a_command_without_the_parameter_is_refused() -> None:
    with pytest.raises(TypeError, match="no parameter 'config'"):
        options_from_dataclass(Example)(lambda name: None)
