"""A bad command-line argument gets one line saying what is wrong and what is expected."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lettingo.cli.main", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["replay", "../no/such/folder"], "no such file or folder"),
        (["replay", "."], "expected a folder with ratings.csv"),
        (["replay", "x", "--speedup", "-1"], "Invalid value for '--speedup'"),
        (["replay"], "Missing argument 'DATASET'"),
        (["broker", "bogus"], "No such command 'bogus'"),
        (["nope"], "No such command 'nope'"),
    ],
)
def test_bad_argument_gets_one_line(args: list[str], expected: str) -> None:
    done = _run(*args)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected.lower() in lines[0].lower()
    assert lines[0].startswith("lettingo")
    assert "Traceback" not in done.stderr
