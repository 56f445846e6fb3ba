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


def test_scaleout_is_a_kafka_benchmark_and_summarises_medians_per_configuration() -> None:
    from bench.__main__ import KAFKA_BENCHMARKS
    from bench.scaleout import summarise

    assert "scaleout" in KAFKA_BENCHMARKS

    def run(workers: int, standby: int, rate: float, per_cpu: float) -> dict:
        return {
            "workers": workers,
            "standby_replicas": standby,
            "interactions_per_s": rate,
            "interactions_per_s_10_90": rate,
            "per_cpu_second": per_cpu,
            "worker_cpu_share_of_machine": 0.5,
            "machine_busy_share": 0.9,
            "load_average_after": [2.0, 2.0, 2.0],
        }

    runs = [run(1, 0, 1000, 2000), run(1, 0, 3000, 4000), run(1, 0, 2000, 3000), run(2, 1, 3000, 1500)]
    runs += [run(2, 0, 5000, 2500)]
    rows = summarise(runs, ((1, 1), (2, 1), (2, 0)))
    assert [(r["workers"], r["standby_replicas"], r["runs"]) for r in rows] == [(1, 0, 3), (2, 1, 1), (2, 0, 1)]
    assert rows[0]["interactions_per_s"] == 2000 and rows[0]["per_cpu_second"] == 3000
    assert [r["speedup_vs_one_worker"] for r in rows] == [1.0, 1.5, 2.5]
