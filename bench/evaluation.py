"""Task evaluation: f_Rec evaluations/s with the frozen embedding reader, batched (``score_batch``) against one
query at a time (``score_one``), on the same ranking queries.

A query is the paper's task for one (user, target, negative draw): a writer's profile of H_u, the recent h_u and
the target among 9 popularity-matched unseen items. Every repeat uses profile texts the reader has not embedded
yet (a repeat tag is appended), so both paths pay for embedding new profiles, as the stream does; item vectors
stay cached, as they do in a running worker. The tag becomes a chunk of its own (``profile_chunks`` splits at the
sentence end), so each repeat runs the sentence model once, on that one new chunk, in either path.

The two "embedded" rows score the same queries again with every profile embedded already: the features and
scorers alone, without the sentence model.
"""

from __future__ import annotations

import random
import time

from bench.common import DATASET, HOME, Options, median, print_table, write_result


def queries(n_users: int, targets: int, draws: int):
    from lettingo.data import LabelScheme, load_dataset, split_dataset
    from lettingo.data.split import cases_for_user
    from lettingo.prompts.profile import history_entries
    from lettingo.recommenders import NegativeSampler, RankingQuery
    from lettingo.writers import write_profile

    data = load_dataset(DATASET)
    split = split_dataset(data)
    labels = LabelScheme.for_scale(data.integer_scale)
    sampler = NegativeSampler(data, 9, seed=13)
    out = []
    for user in split.test[:n_users]:
        for case in cases_for_user(data.ratings_by_user[user], split.cfg, range(targets)):
            profile = write_profile(
                "combined",
                history_entries(case.long_history, data.items, labels),
                random.Random(f"{user}:{case.position}"),
            )
            for d in range(draws):
                cand = sampler.sample(user, case.target.item_id, d)
                out.append(RankingQuery(profile, case.recent, cand.candidate_ids))
    return data, split, out


def run(opts: Options) -> dict:
    started = time.perf_counter()
    from dataclasses import replace

    from lettingo.recommenders import TextEncoder, build_or_load_reader

    data, split, base = queries(n_users=20 if opts.quick else 122, targets=3, draws=5 if opts.quick else 10)
    encoder = TextEncoder(HOME / "cache")
    reader, folder = build_or_load_reader(data, split, HOME / "models", encoder)
    reader.score_batch("ranking", base)  # warm: the sentence model and every item vector, once
    timings: dict[str, list[float]] = {"batched": [], "one_by_one": [], "batched_embedded": [], "one_embedded": []}
    for rep in range(opts.repeats):
        for mode in ("batched", "one_by_one", "batched_embedded", "one_embedded"):
            if mode.endswith("embedded"):
                qs = base  # embedded by the warm-up
            else:
                qs = [replace(q, profile=f"{q.profile} [{mode} {rep}]") for q in base]  # not embedded yet
            t = time.perf_counter()
            if mode.startswith("batched"):
                reader.score_batch("ranking", qs)
            else:
                for q in qs:
                    reader.score_one("ranking", q)
            timings[mode].append(len(qs) / (time.perf_counter() - t))
    batched, single = median(timings["batched"]), median(timings["one_by_one"])
    batched_embedded, single_embedded = median(timings["batched_embedded"]), median(timings["one_embedded"])
    print_table(
        f"task evaluation: {len(base)} ranking queries (1 target + 9 negatives), reader {reader.version} (medians)",
        ["path", "evaluations/s", "vs one-by-one"],
        [
            ["score_batch", batched, f"{batched / single:.1f}x"],
            ["score_one", single, "1.0x"],
            ["score_batch, profiles embedded", batched_embedded, f"{batched_embedded / single_embedded:.1f}x"],
            ["score_one, profiles embedded", single_embedded, "1.0x"],
        ],
        note=f"{opts.repeats} repeats; unique profiles per query group, item vectors cached",
    )
    figures = {
        "queries": len(base),
        "distinct_profiles": len({q.profile for q in base}),
        "reader": str(folder.name),
        "batched_per_second_median": batched,
        "one_by_one_per_second_median": single,
        "speedup_batched": batched / single,
        "batched_embedded_per_second_median": batched_embedded,
        "one_by_one_embedded_per_second_median": single_embedded,
        "speedup_batched_embedded": batched_embedded / single_embedded,
        "runs_per_second": timings,
    }
    write_result("evaluation", opts, figures, started)
    return figures
