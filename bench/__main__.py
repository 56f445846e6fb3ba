"""``python -m bench [--quick] [--only NAME,...] [--repeats N]``: run the benchmarks, each printing a table and
writing bench/results/<name>.json (machine, date, commit, command, figures)."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time

from bench.common import Options

KAFKA_BENCHMARKS = {"ingest", "latency", "state", "chaos", "soak", "scaleout"}
# name -> module under bench/; each has run(opts) -> dict
BENCHMARKS = {
    "ingest": "bench.ingest",
    "ingest_core": "bench.ingest_core",
    "generation": "bench.generation",
    "generation_smollm2": "bench.generation_smollm2",
    "latency": "bench.latency",
    "state": "bench.state",
    "training": "bench.training",
    "evaluation": "bench.evaluation",
    "chaos": "bench.chaos",
    "soak": "bench.soak",
    "scaleout": "bench.scaleout",
}


def parse_args(argv: list[str]) -> tuple[Options, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes (minutes in all); the default is full.")
    parser.add_argument("--only", default="", help=f"Comma-separated benchmarks to run, of: {', '.join(BENCHMARKS)}.")
    parser.add_argument("--repeats", type=int, default=None, help="Repeats per figure (median reported).")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    repeats = args.repeats or (2 if args.quick else 3)
    return Options(quick=args.quick, repeats=repeats, argv=["python -m bench", *argv]), names


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit``, as SIGINT is turned into ``KeyboardInterrupt``: the benchmarks' cleanup
    (stopping workers, deleting topics) runs in ``finally`` blocks, which the default SIGTERM skips."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    opts, names = parse_args(sys.argv[1:] if argv is None else argv)
    exit_on_sigterm()
    if KAFKA_BENCHMARKS & set(names):
        from streams.kafka import broker
        from streams.settings import StreamSettings

        print(
            broker.start(StreamSettings.load()), flush=True
        )  # the local broker, unless LETTINGO_KAFKA_BOOTSTRAP names one
    failed = []
    for name in names:
        print(f"\n=== {name} ({'quick' if opts.quick else 'full'}, {opts.repeats} repeats) ===", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(BENCHMARKS[name]).run(opts)
        except Exception as e:  # one failing benchmark must not hide the others' figures
            import traceback

            traceback.print_exc()
            failed.append(f"{name}: {type(e).__name__}: {e}")
        print(f"--- {name}: {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        print("\nFAILED:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
