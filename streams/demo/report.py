"""The demo's report: the paper's table on the test users, what the stream did, and plots."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from aiokafka import AIOKafkaConsumer

from lettingo.data import Dataset, DatasetSplit, LabelScheme
from lettingo.evaluation import EvaluationConfig
from lettingo.records import InputLimits, Interaction, PreferencePair, Profile, RecordError, Reward, decode_record
from lettingo.report import compare, markdown_table
from lettingo.settings import Settings
from trainer.sft import sft_on_chosen

if TYPE_CHECKING:
    from streams.demo.run import Demo

# Reading back the run's own topics: what the worker accepted, whatever the timestamps and scale.
READ_BACK = InputLimits(
    1 << 24, ts_min=0.0, ts_max_ahead_s=float("inf"), rating_min=float("-inf"), rating_max=float("inf")
)


def generated_profiles(
    model: Path, adapter: Path | None, dataset: Dataset, split: DatasetSplit, users: list[str], n: int, seed: int
) -> dict[str, list[str]]:
    """``n`` profiles per test user at temperature 1.0 from H_u of the user's final case."""
    from lettingo.data.split import cases_for_user
    from lettingo.generators.hf import HFGenerator
    from lettingo.prompts.profile import profile_prompt

    labels = LabelScheme.for_scale(dataset.integer_scale)
    generator = HFGenerator(str(model), adapter=str(adapter) if adapter else None)
    prompts, owners = [], []
    for user in users:
        cases = cases_for_user(dataset.ratings_by_user[user], split.cfg, range(1))
        if cases:
            prompts.append(profile_prompt(cases[0].long_history, dataset.items, labels))
            owners.append(user)
    out: dict[str, list[str]] = {}
    for start in range(0, len(prompts), 32):
        batch = generator.generate(prompts[start : start + 32], n=n, temperature=1.0, seed=seed)
        for user, samples in zip(owners[start : start + 32], batch, strict=True):
            out[user] = [g.text for g in samples]
    generator.close()
    return out


async def _read_topic(settings: Settings, name: str, record_type: type) -> list[tuple[int, Any]]:
    """Every record of a topic of the run, with its Kafka timestamp (ms); undecodable ones are skipped."""
    consumer = AIOKafkaConsumer(
        settings.topic(name), **settings.kafka_client_config(), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000, max_records=10_000)
            if not batch:
                return out
            for messages in batch.values():
                for m in messages:
                    if m.value is not None:
                        with contextlib.suppress(RecordError):
                            out.append((m.timestamp, decode_record(record_type, m.value, READ_BACK)))
    finally:
        await consumer.stop()


def profile_latencies(profiles: list[tuple[int, Profile]], interactions: list[tuple[int, Interaction]]) -> list[float]:
    """Seconds from the Kafka timestamp of the interaction a profile's history ends with (the one that crossed
    the drift or cold-start threshold) to the profile's own record on ``profiles``."""
    sent = {i.event_id: ts for ts, i in interactions}
    out = []
    for ts, profile in profiles:
        event_id = profile.history_ref.partition("@")[2]
        if event_id in sent:
            out.append((ts - sent[event_id]) / 1000)
    return out


def latency_line(latencies: list[float]) -> str:
    if not latencies:
        return "- end-to-end latency: no profile could be matched to its interaction"
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return (
        f"- end-to-end latency, interaction to new profile on `profiles` ({len(latencies)} profiles, under the "
        f"replay's load): p50 {p50:.2f} s, p95 {p95:.2f} s, p99 {p99:.2f} s, max {max(latencies):.2f} s"
    )


def _plot_stream(demo: Demo, rewards: list[Reward], path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7))
    history = demo.progress.history
    if len(history) > 1:
        t0 = history[0].at
        ax1.plot([s.at - t0 for s in history], [s.processed for s in history], label="interactions processed")
        for name in ("profiles", "rewards", "preference-pairs"):
            ax1.plot([s.at - t0 for s in history], [s.counts.get(name, 0) for s in history], label=name)
        ax1.set_xlabel("seconds")
        ax1.set_ylabel("records")
        ax1.legend()
    by_version: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rewards:
        if r.source.value == "task_eval":
            by_version[r.model_version or "?"].append((r.ts, r.value))
    for version, points in sorted(by_version.items()):
        points.sort()
        window = max(1, len(points) // 50)
        xs = [points[i][0] for i in range(window - 1, len(points), window)]
        ys = [
            sum(v for _, v in points[i - window + 1 : i + 1]) / window for i in range(window - 1, len(points), window)
        ]
        ax2.plot(xs, ys, label=f"model {version}")
    ax2.set_xlabel("event time of the rated interaction")
    ax2.set_ylabel("mean task reward")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(demo: Demo, dataset: Dataset, split: DatasetSplit, reader, nano: Path, registry_root: Path) -> Path:
    from lettingo.registry import ModelRegistry

    cfg = demo.config
    users = list(split.test[: cfg.report_users])
    generated = {
        "base generator": generated_profiles(nano, None, dataset, split, users, cfg.samples_per_user, cfg.seed)
    }
    registry = ModelRegistry(registry_root)
    champion = registry.champion()
    contrasts: list[tuple[str, str]] = []
    # The champion; or, when the gate refused every round, the latest round, so its effect is still shown.
    trained = champion if champion is not None else registry.latest()
    dpo = None
    if trained is not None:
        manifest = registry.manifest(trained)
        adapter = registry.local_path(trained) if manifest.kind == "lora" else None
        model = Path(manifest.base_model) if adapter else registry.local_path(trained)
        dpo = f"DPO-aligned (v{trained})" if trained == champion else f"DPO round v{trained} (refused by the gate)"
        generated[dpo] = generated_profiles(model, adapter, dataset, split, users, cfg.samples_per_user, cfg.seed)
        contrasts.append((dpo, "base generator"))
    pairs = [p for _, p in asyncio.run(_read_topic(demo.settings, "preference-pairs", PreferencePair))]
    if pairs:
        sft = sft_on_chosen(nano, pairs, demo.run_dir / "sft-on-p-plus", seed=cfg.seed)
        generated["SFT on P+"] = generated_profiles(sft, None, dataset, split, users, cfg.samples_per_user, cfg.seed)
        contrasts.append(("SFT on P+", "base generator"))
    if dpo is not None and pairs:
        contrasts.append((dpo, "SFT on P+"))
    # Both held-out ratings (validation and target) as targets: neither was replayed, and both lie after H_u.
    evaluation = EvaluationConfig(targets_per_user=2, draws=10, seed=cfg.seed)
    comparison = compare(dataset, split, reader, users, generated, evaluation, contrasts)
    rewards = [r for _, r in asyncio.run(_read_topic(demo.settings, "rewards", Reward))]
    timed_profiles = asyncio.run(_read_topic(demo.settings, "profiles", Profile))
    profiles = [p for _, p in timed_profiles]
    latencies = profile_latencies(timed_profiles, asyncio.run(_read_topic(demo.settings, "interactions", Interaction)))
    _plot_stream(demo, rewards, demo.run_dir / "stream.png")
    reasons = Counter(p.reason.value for p in profiles)
    last = demo.progress.history[-1] if demo.progress.history else None
    elapsed = (last.at - demo.progress.history[0].at) if last else 0.0
    lines = [
        f"# lettingo demo {demo.run_id}",
        "",
        f"Dataset {dataset.name}: {len(dataset.ratings_by_user)} users; the {len(split.test)} test users' "
        "validation and target ratings were never replayed, so they fed no reward and no pair.",
        "",
        "## Test users, same frozen f_Rec for every system",
        "",
        "Ranking: each of the two held-out items (validation and target) among 9 popularity-matched unseen items, "
        f"{evaluation.draws} negative draws, the profile as the only history channel (recent-10 only: h_u instead). "
        "Sentiment: like / neutral / dislike from the profile and h_u. "
        f"Generators: {cfg.samples_per_user} profiles per user at temperature 1.0, each scored. "
        "SFT on P+: the base generator fine-tuned on the chosen profile of every streamed pair, with the DPO "
        "round's budget. Intervals: 95 % bootstrap over users; differences are paired.",
        "",
        markdown_table(comparison),
        "## The stream",
        "",
        f"- interactions processed: {last.processed if last else 0:,.0f} "
        f"of {last.counts.get('interactions', 0) if last else 0:,} replayed, in {elapsed:.0f} s "
        f"({(last.processed / elapsed) if last and elapsed else 0:,.0f} interactions/s)",
        f"- profiles written: {len(profiles)} ({', '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))})",
        f"- rewards: {len(rewards)}; preference pairs: {last.counts.get('preference-pairs', 0) if last else 0}; "
        f"dead letters: {last.counts.get('dead-letters', 0) if last else 0}",
        f"- model versions published: {registry.versions()}; champion: {champion}",
        latency_line(latencies),
        "",
        "![stream](stream.png)",
        "",
    ]
    path = demo.run_dir / "report.md"
    path.write_text("\n".join(lines))
    (demo.run_dir / "report.json").write_text(json.dumps(comparison.as_dict(), indent=2))
    return path
