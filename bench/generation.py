"""Generation: profiles/s and tokens/s of batched (one ``generate`` call for the batch) against one-at-a-time
(one call per prompt) generation on the nano model on CPU, by batch size, on the real profile prompt over H_u.
"""

from __future__ import annotations

import time

from bench.common import DATASET, HOME, Options, median, print_table, write_result

BATCH_SIZES = (1, 4, 16, 32)


def prompts(n: int):
    from lettingo.data import LabelScheme, load_dataset, split_dataset
    from lettingo.data.split import cases_for_user
    from lettingo.prompts.profile import profile_prompt

    data = load_dataset(DATASET)
    split = split_dataset(data)
    labels = LabelScheme.for_scale(data.integer_scale)
    out = []
    for user in (*split.test, *split.validation):
        case = cases_for_user(data.ratings_by_user[user], split.cfg, range(1))[0]
        out.append(profile_prompt(case.long_history, data.items, labels))
        if len(out) == n:
            break
    return out


def run(opts: Options) -> dict:
    started = time.perf_counter()
    import torch

    from lettingo.generators.hf import HFGenerator
    from lettingo.nano.build import build_nano
    from lettingo.nano.config import NanoConfig

    config = NanoConfig.quick() if opts.quick else NanoConfig()
    model = build_nano(DATASET, HOME / "models", config)
    generator = HFGenerator(str(model), device="cpu")
    max_new = 48 if opts.quick else 96
    pool = prompts(max(BATCH_SIZES))
    sampling = {"n": 1, "temperature": 1.0, "max_new_tokens": max_new, "seed": 0}
    generator.generate(pool[:2], **sampling)  # warm-up: static cache, kernels
    rows, results = [], []
    for b in BATCH_SIZES:
        per_mode: dict[str, dict[str, list[float]]] = {}
        for _rep in range(opts.repeats):
            batch = pool[:b]
            for mode in ("batched", "one_at_a_time"):
                t = time.perf_counter()
                if mode == "batched":
                    gens = [g for gs in generator.generate(batch, **sampling) for g in gs]
                else:
                    gens = [g for p in batch for g in generator.generate([p], **sampling)[0]]
                seconds = time.perf_counter() - t
                tokens = sum(g.completion_tokens for g in gens)
                m = per_mode.setdefault(mode, {"profiles_per_s": [], "tokens_per_s": []})
                m["profiles_per_s"].append(len(gens) / seconds)
                m["tokens_per_s"].append(tokens / seconds)
        med = {mode: {k: median(v) for k, v in m.items()} for mode, m in per_mode.items()}
        ratio = med["batched"]["profiles_per_s"] / med["one_at_a_time"]["profiles_per_s"]
        results.append({"batch_size": b, "medians": med, "runs": per_mode, "batched_over_single": ratio})
        rows.append(
            [
                b,
                med["batched"]["profiles_per_s"],
                med["batched"]["tokens_per_s"],
                med["one_at_a_time"]["profiles_per_s"],
                med["one_at_a_time"]["tokens_per_s"],
                f"{ratio:.2f}",
            ]
        )
    print_table(
        f"generation: {model.name} ({sum(p.numel() for p in generator.model.parameters()):,} params), CPU, "
        f"{torch.get_num_threads()} threads, temperature 1.0, max {max_new} new tokens (medians)",
        ["batch", "batched prof/s", "batched tok/s", "single prof/s", "single tok/s", "batched/single"],
        rows,
        note=f"{opts.repeats} repeats",
    )
    figures = {
        "model": model.name,
        "nano_config": "quick" if opts.quick else "full",
        "parameters": sum(p.numel() for p in generator.model.parameters()),
        "torch_threads": torch.get_num_threads(),
        "max_new_tokens": max_new,
        "temperature": 1.0,
        "by_batch_size": results,
    }
    write_result("generation", opts, figures, started)
    return figures
