"""The benchmark harness's argument handling (no benchmark runs here, and nothing is timed)."""

from __future__ import annotations

import pytest

from bench.__main__ import BENCHMARKS, parse_args


def test_defaults_run_everything_in_full_mode() -> None:
    opts, names = parse_args([])
    assert names == list(BENCHMARKS)
    assert not opts.quick and opts.repeats == 3


def test_quick_and_only_select_benchmarks_in_order_given() -> None:
    opts, names = parse_args(["--quick", "--only", "state, ingest"])
    assert opts.quick and opts.repeats == 2
    assert names == ["state", "ingest"]
    assert opts.command == "python -m bench --quick --only state, ingest"


def test_unknown_benchmark_and_bad_repeats_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--only", "ingest,nope"])
    assert "unknown benchmark(s): nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--repeats", "0"])


def test_every_benchmark_module_has_a_run_entry_point() -> None:
    import importlib

    for module in BENCHMARKS.values():
        assert callable(importlib.import_module(module).run)
