"""Generation: profiles/s and tokens/s of batched (one ``generate`` call for the batch) against one-at-a-time
(one call per prompt) generation on the nano model on CPU, by batch size, on the real profile prompt over H_u.

Measured twice in the same run, on the same prompts: without the shared-prefix cache (``before``) and with it
(``after``, the default). ``batched_speedup`` is batched profiles/s over one-at-a-time profiles/s, both under the
same setting. A profile of one batched call (cProfile, cumulative seconds) says where the batched time goes.
"""

from __future__ import annotations

import cProfile
import pstats
import time

from bench.common import DATASET, HOME, Options, median, print_table, write_result

BATCH_SIZES = (1, 4, 16, 32)
# name -> (HFGenerator options, Decoding options); "after, ungrounded" shows what the grounding rule costs
SETTINGS = {
    "before": ({"prefix_cache": False}, {}),
    "after": ({"prefix_cache": True}, {}),
    "after, ungrounded": ({"prefix_cache": True}, {"grounded": False}),
}
# where batched time goes: (label, file suffix, function name) of the functions whose cumulative time is reported
PROFILED = (
    ("prompt encoding", "llama_decode.py", "_encode"),
    ("decoding steps (model)", "llama_decode.py", "_step"),
    ("grounding rule", "grounding.py", "banned"),
    ("n-gram ban / penalties", "controls.py", "apply_processors"),
    ("stop strings", "controls.py", "done"),
)


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


def measure(
    generators: dict, pool, sampling, repeats: int, batch_sizes: tuple[int, ...] = BATCH_SIZES
) -> dict[str, list[dict]]:
    """Batched and one-at-a-time profiles/s and tokens/s by batch size (medians of ``repeats``) for each
    setting; the settings take turns within each repeat, so load from other jobs falls on all of them alike."""
    runs: dict[str, dict[int, dict[str, dict[str, list[float]]]]] = {name: {} for name in generators}
    for b in batch_sizes:
        batch = pool[:b]
        for _rep in range(repeats):
            for name, (generator, decoding) in generators.items():
                for mode in ("batched", "one_at_a_time"):
                    t = time.perf_counter()
                    if mode == "batched":
                        gens = [g for gs in generator.generate(batch, decoding=decoding, **sampling) for g in gs]
                    else:
                        gens = [g for p in batch for g in generator.generate([p], decoding=decoding, **sampling)[0]]
                    seconds = time.perf_counter() - t
                    tokens = sum(g.completion_tokens for g in gens)
                    m = runs[name].setdefault(b, {}).setdefault(mode, {"profiles_per_s": [], "tokens_per_s": []})
                    m["profiles_per_s"].append(len(gens) / seconds)
                    m["tokens_per_s"].append(tokens / seconds)
    out: dict[str, list[dict]] = {}
    for name, by_size in runs.items():
        out[name] = []
        for b, per_mode in by_size.items():
            med = {mode: {k: median(v) for k, v in m.items()} for mode, m in per_mode.items()}
            speedup = med["batched"]["profiles_per_s"] / med["one_at_a_time"]["profiles_per_s"]
            out[name].append({"batch_size": b, "medians": med, "runs": per_mode, "batched_speedup": speedup})
    return out


def load_generators(model_path, settings: dict) -> dict:
    """Per setting of ``settings`` (name -> (HFGenerator options, Decoding options)): the model on the CPU and its
    decoding."""
    from lettingo.generators.decoding import Decoding
    from lettingo.generators.hf import HFGenerator

    path = str(model_path)
    return {name: (HFGenerator(path, device="cpu", **kw), Decoding(**dec)) for name, (kw, dec) in settings.items()}


def model_facts(generator, pool, max_new: int) -> dict:
    """What both generation benchmarks report beside their speeds: the model's size, the threads, the sampling,
    and how much of the prompts of ``pool`` is the shared prefix the cache computes once."""
    import torch

    prefix = generator._shared_prefix()  # the fast decoder's Prefix, or (ids, cache) on transformers' generate
    return {
        "parameters": sum(p.numel() for p in generator.model.parameters()),
        "torch_threads": torch.get_num_threads(),
        "max_new_tokens": max_new,
        "temperature": 1.0,
        "shared_prefix_tokens": 0 if prefix is None else len(prefix.ids if hasattr(prefix, "ids") else prefix[0]),
        "prompt_tokens_median": median([len(generator.encode(p)) for p in pool]),
    }


def profile_batched(generator, decoding, batch, sampling) -> dict:
    """Cumulative seconds of the main parts of one batched call, under cProfile (which inflates Python-heavy
    parts such as the grounding rule somewhat)."""
    profiler = cProfile.Profile()
    t = time.perf_counter()
    profiler.enable()
    generator.generate(batch, decoding=decoding, **sampling)
    profiler.disable()
    total = time.perf_counter() - t
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (calls, primitive, tottime, cumtime, callers)
    parts = {
        label: sum(v[3] for (f, _line, name), v in stats.items() if f.endswith(suffix) and name == fn)
        for label, suffix, fn in PROFILED
    }
    return {
        "batch_size": len(batch),
        "total_s": total,
        "parts_s": parts,
        "shares": {k: v / total for k, v in parts.items()},
    }


def run(opts: Options) -> dict:
    started = time.perf_counter()
    from lettingo.nano.build import build_nano
    from lettingo.nano.config import NanoConfig

    config = NanoConfig.quick() if opts.quick else NanoConfig()
    model = build_nano(DATASET, HOME / "models", config)
    max_new = 48 if opts.quick else 96
    pool = prompts(max(BATCH_SIZES))
    sampling = {"n": 1, "temperature": 1.0, "max_new_tokens": max_new, "seed": 0}
    generators = load_generators(model, SETTINGS)
    for generator, decoding in generators.values():
        generator.generate(pool[:2], decoding=decoding, **sampling)  # warm-up: kernels, the prefix cache
    facts = model_facts(generators["after"][0], pool, max_new)
    by_setting = measure(generators, pool, sampling, opts.repeats)
    profiles = {name: profile_batched(g, d, pool, sampling) for name, (g, d) in generators.items()}
    rows = []
    for name, results in by_setting.items():
        for r in results:
            med = r["medians"]
            rows.append(
                [
                    f"{name} ({'prefix cache' if SETTINGS[name][0]['prefix_cache'] else 'no prefix cache'})",
                    r["batch_size"],
                    med["batched"]["profiles_per_s"],
                    med["batched"]["tokens_per_s"],
                    med["one_at_a_time"]["profiles_per_s"],
                    med["one_at_a_time"]["tokens_per_s"],
                    f"{r['batched_speedup']:.2f}",
                ]
            )
    print_table(
        f"generation: {model.name} ({facts['parameters']:,} params), CPU, {facts['torch_threads']} threads, "
        f"temperature 1.0, max {max_new} new tokens (medians); shared prefix {facts['shared_prefix_tokens']} of "
        f"{facts['prompt_tokens_median']:.0f} prompt tokens (median)",
        ["setting", "batch", "batched prof/s", "batched tok/s", "single prof/s", "single tok/s", "batched_speedup"],
        rows,
        note=f"{opts.repeats} repeats",
    )
    print_table(
        f"where one batched call of {len(pool)} prompts spends its time (cProfile, cumulative seconds)",
        ["part", *[f"{name} s" for name in profiles], *[f"{name} share" for name in profiles]],
        [
            [
                label,
                *[p["parts_s"][label] for p in profiles.values()],
                *[f"{p['shares'][label]:.0%}" for p in profiles.values()],
            ]
            for label, _, _ in PROFILED
        ]
        + [["total", *[p["total_s"] for p in profiles.values()], *["100%" for _ in profiles]]],
    )
    largest = max(BATCH_SIZES)
    speedup = {
        name: next(r["batched_speedup"] for r in rs if r["batch_size"] == largest) for name, rs in by_setting.items()
    }
    figures = {
        "model": model.name,
        "nano_config": "quick" if opts.quick else "full",
        **facts,
        "batched_speedup": speedup["after"],
        "batched_speedup_before": speedup["before"],
        "batched_speedup_batch_size": largest,
        "batched_speedup_ungrounded": speedup["after, ungrounded"],
        "batched_profiles_per_s_after_over_before": next(
            a["medians"]["batched"]["profiles_per_s"] / b["medians"]["batched"]["profiles_per_s"]
            for a, b in zip(by_setting["after"], by_setting["before"], strict=True)
            if a["batch_size"] == largest
        ),
        "settings": SETTINGS,
        "by_setting": by_setting,
        "batched_profile": profiles,
    }
    write_result("generation", opts, figures, started)
    return figures
