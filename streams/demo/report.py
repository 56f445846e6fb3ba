"""The demo's report: the paper's table on the test users, what the stream did, and plots."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from aiokafka import AIOKafkaConsumer

from lettingo.data import Dataset, DatasetSplit, LabelScheme
from lettingo.evaluation import EvaluationConfig
from lettingo.records import Profile, Reward
from lettingo.report import compare, markdown_table
from lettingo.settings import Settings

if TYPE_CHECKING:
    from streams.demo.run import Demo


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


async def _read_topic(settings: Settings, name: str, record_type: type) -> list:
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
                out.extend(record_type.from_bytes(m.value) for m in messages if m.value is not None)
    finally:
        await consumer.stop()


def _plot_stream(demo: Demo, rewards: list[Reward], path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7))
    history = demo.progress.history
    if len(history) > 1:
        t0 = history[0].at
        ax1.plot([s.at - t0 for s in history], [s.processed for s in history], label="events processed")
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
    contrasts = []
    if champion is not None:
        manifest = registry.manifest(champion)
        adapter = registry.local_path(champion) if manifest.kind == "lora" else None
        model = Path(manifest.base_model) if adapter else registry.local_path(champion)
        generated[f"DPO-aligned (v{champion})"] = generated_profiles(
            model, adapter, dataset, split, users, cfg.samples_per_user, cfg.seed
        )
        contrasts.append((f"DPO-aligned (v{champion})", "base generator"))
    evaluation = EvaluationConfig(targets_per_user=1, draws=5, seed=cfg.seed)
    comparison = compare(dataset, split, reader, users, generated, evaluation, contrasts)
    rewards = asyncio.run(_read_topic(demo.settings, "rewards", Reward))
    profiles = asyncio.run(_read_topic(demo.settings, "profiles", Profile))
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
        "Ranking: the held-out item among 9 popularity-matched unseen items, the profile as the only history channel "
        "(recent-10 only: h_u instead). Sentiment: like / neutral / dislike from the profile and h_u. "
        f"Generators: {cfg.samples_per_user} profiles per user at temperature 1.0, each scored.",
        "",
        markdown_table(comparison),
        "## The stream",
        "",
        f"- events processed: {last.processed if last else 0:,.0f} in {elapsed:.0f} s "
        f"({(last.processed / elapsed) if last and elapsed else 0:,.0f} events/s)",
        f"- profiles written: {len(profiles)} ({', '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))})",
        f"- rewards: {len(rewards)}; preference pairs: {last.counts.get('preference-pairs', 0) if last else 0}; "
        f"dead letters: {last.counts.get('dead-letters', 0) if last else 0}",
        f"- model versions published: {registry.versions()}; champion: {champion}",
        "",
        "![stream](stream.png)",
        "",
    ]
    path = demo.run_dir / "report.md"
    path.write_text("\n".join(lines))
    (demo.run_dir / "report.json").write_text(json.dumps(comparison.as_dict(), indent=2))
    return path
