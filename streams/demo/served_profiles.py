"""The quick demo's profiles without the stream: build (or find) the quick nano as ``lettingo demo --quick`` does,
write what the worker serves (greedy) and explores (temperature 1) for validation users, and read them back with
:mod:`lettingo.profile_quality`. A minute or two instead of a five-minute demo, for measuring decoding changes.

    .venv/bin/python -m streams.demo.served_profiles [--dataset PATH] [--users 60] [--model NANO_FOLDER]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import torch

from lettingo.data import LabelScheme, load_dataset, split_dataset
from lettingo.generators.decoding import Decoding
from lettingo.generators.hf import HFGenerator
from lettingo.nano.build import build_nano
from lettingo.nano.config import NanoConfig
from lettingo.profile_quality import check_profile, quality_report
from lettingo.prompts.profile import profile_prompt
from lettingo.settings import Settings

DATASET = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-latest-small"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--users", type=int, default=60, help="first validation users")
    parser.add_argument("--model", type=Path, default=None, help="a nano folder [the quick nano, built if missing]")
    parser.add_argument("--ungrounded", action="store_true", help="decode without the grounding rule")
    parser.add_argument("--show", type=int, default=3, help="profiles printed per system")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    model = args.model or build_nano(args.dataset, Settings.load().path("models"), NanoConfig.quick())
    print(f"nano: {model} ({time.perf_counter() - started:.0f} s)")
    dataset = load_dataset(args.dataset)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    cases = split_dataset(dataset).cases(dataset, "validation")[: args.users]
    prompts = [profile_prompt(c.long_history, dataset.items, labels) for c in cases]
    generator = HFGenerator(str(model), device="cpu")
    decoding = Decoding(grounded=not args.ungrounded)
    for name, sampling in (("served (greedy)", {"n": 1, "temperature": 0.0}), ("explored (t=1)", {"n": 2})):
        started = time.perf_counter()
        out = generator.generate(prompts, max_new_tokens=96, seed=3, decoding=decoding, **sampling)
        seconds = time.perf_counter() - started
        report = quality_report([(p, [g.text for g in gs]) for p, gs in zip(prompts, out, strict=True)])
        print(f"{name}, {len(prompts)} users, {seconds:.0f} s: {report.line()}")
        errors = Counter(
            e.split(":", 1)[0]
            for p, gs in zip(prompts, out, strict=True)
            for g in gs
            for e in check_profile(g.text, p.entries).errors
        )
        print(f"  false statements by kind: {dict(errors) or 'none'}")
        for p, gs in list(zip(prompts, out, strict=True))[: args.show]:
            print(f"  > user {p.user_id}: {gs[0].text}")


if __name__ == "__main__":
    main()
