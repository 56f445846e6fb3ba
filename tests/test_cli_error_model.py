"""The error model at the command line: every LettingoError is one line with its class's exit code, option values
are checked against their choices before any work starts, and ``--version`` answers from the package metadata."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from lettingo.errors import ConfigError, InputError, LettingoError, ModelError, ServiceError


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lettingo.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def test_a_bad_task_is_a_usage_error_not_a_traceback(tmp_path: Path, dataset_path: Path) -> None:
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text('{"user_id": "1", "candidates": []}\n')
    done = _run(
        "evaluate",
        str(candidates),
        "--out",
        str(tmp_path / "rewards.jsonl"),
        "--dataset",
        str(dataset_path),
        "--task",
        "bogus",
    )
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.returncode == 2
    assert "--task" in lines[0] and "'bogus' is not one of" in lines[0] and "ranking" in lines[0]


def test_version_comes_from_the_package_metadata() -> None:
    done = _run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"lettingo {version('lettingo')}"


def test_shell_completion_is_available() -> None:
    done = _run("--show-completion", "bash")
    assert done.returncode == 0, done.stderr
    assert "_LETTINGO_COMPLETE" in done.stdout


@pytest.mark.parametrize(
    ("error", "code"),
    [(LettingoError, 1), (InputError, 65), (ModelError, 66), (ServiceError, 69), (ConfigError, 78)],
)
def test_each_kind_of_error_is_one_line_with_its_exit_code(
    error: type[LettingoError], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from lettingo.cli import main

    def fail() -> None:
        raise error("the broker at localhost:1 did not answer\nwithin 5 s")

    with pytest.raises(SystemExit) as exit_info:
        main.run_guarded(fail)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert err == "lettingo: error: the broker at localhost:1 did not answer within 5 s\n"


def test_a_registry_error_reaches_the_user_as_one_line(tmp_path: Path) -> None:
    done = _run("models", "show", "7", "--registry", str(tmp_path / "registry"))
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lettingo: error:"), done.stderr
    assert done.returncode == ModelError.exit_code


def test_the_library_errors_share_the_root() -> None:
    from lettingo.data import DatasetFormatError
    from lettingo.generators import GeneratorError
    from lettingo.generators.spec import GeneratorSpecError
    from lettingo.records import RecordError
    from lettingo.registry import CorruptArtifactError, RegistryError
    from trainer.kafka_io import KafkaUnavailableError
    from trainer.policy import PolicyError

    assert issubclass(DatasetFormatError, InputError) and issubclass(DatasetFormatError, ValueError)
    assert issubclass(RecordError, InputError)
    assert issubclass(GeneratorSpecError, ConfigError) and issubclass(GeneratorSpecError, ValueError)
    assert issubclass(GeneratorError, ModelError) and issubclass(CorruptArtifactError, RegistryError)
    assert issubclass(RegistryError, ModelError) and issubclass(PolicyError, ValueError)
    assert issubclass(KafkaUnavailableError, ServiceError)
