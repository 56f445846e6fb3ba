"""The demo's report: the paper's table on the test users, what the stream did, and plots."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from aiokafka import AIOKafkaConsumer

from lettingo.data import Dataset, DatasetSplit, LabelScheme
from lettingo.evaluation import EvaluationConfig
from lettingo.profile_quality import prompt_from_text, quality_report
from lettingo.prompts.profile import ProfilePrompt, profile_prompt
from lettingo.records import (
    InputLimits,
    Interaction,
    ModelStatus,
    PreferencePair,
    Profile,
    ProfileCandidate,
    RecordError,
    Reward,
    decode_record,
)
from lettingo.report import compare, markdown_table
from streams.settings import StreamSettings
from trainer.sft import sft_on_chosen

if TYPE_CHECKING:
    from streams.demo.run import Demo

# Reading back the run's own topics: what the worker accepted, whatever the timestamps and scale.
READ_BACK = InputLimits(
    1 << 24, ts_min=0.0, ts_max_ahead_s=float("inf"), rating_min=float("-inf"), rating_max=float("inf")
)


@dataclass
class Written:
    """A system's profiles per user, with the prompt each was written from (for the quality checks)."""

    profiles: dict[str, list[str]]
    prompts: dict[str, ProfilePrompt]

    def samples(self) -> list[tuple[ProfilePrompt, list[str]]]:
        return [(self.prompts[u], texts) for u, texts in self.profiles.items() if u in self.prompts]


def test_prompts(dataset: Dataset, split: DatasetSplit, users: list[str]) -> dict[str, ProfilePrompt]:
    """Each test user's profile prompt over H_u of the final case."""
    from lettingo.data.split import cases_for_user

    labels = LabelScheme.for_scale(dataset.integer_scale)
    out = {}
    for user in users:
        cases = cases_for_user(dataset.ratings_by_user[user], split.cfg, range(1))
        if cases:
            out[user] = profile_prompt(cases[0].long_history, dataset.items, labels)
    return out


def generated_profiles(
    model: Path, adapter: Path | None, prompts: dict[str, ProfilePrompt], n: int, seed: int
) -> Written:
    """``n`` profiles per test user at temperature 1.0 from H_u of the user's final case."""
    from lettingo.generators.hf import HFGenerator

    generator = HFGenerator(str(model), adapter=str(adapter) if adapter else None)
    owners = list(prompts)
    out: dict[str, list[str]] = {}
    for start in range(0, len(owners), 32):
        batch = generator.generate([prompts[u] for u in owners[start : start + 32]], n=n, temperature=1.0, seed=seed)
        for user, samples in zip(owners[start : start + 32], batch, strict=True):
            out[user] = [g.text for g in samples]
    generator.close()
    return Written(out, prompts)


def served_profiles(profiles: list[Profile], candidates: list[ProfileCandidate], dataset: Dataset) -> Written:
    """The latest profile the worker served for each user, with the exact prompt it was written from: the served
    profile competes in its own explored round, so its candidate record (same profile id) carries the prompt.
    (The worker's prompt can hold fewer items than the user rated: an item it did not know is left out.)"""
    prompt_of = {c.profile_id: c.prompt for c in candidates if c.prompt}
    latest = {p.user_id: p for p in sorted(profiles, key=lambda p: p.version)}
    texts: dict[str, list[str]] = {}
    prompts: dict[str, ProfilePrompt] = {}
    for user, profile in latest.items():
        text = prompt_of.get(profile.profile_id)
        prompt = prompt_from_text(text, user, dataset) if text else None
        if prompt is not None:
            texts[user] = [profile.text]
            prompts[user] = prompt
    return Written(texts, prompts)


def quality_lines(systems: dict[str, Written], samples: int = 3) -> list[str]:
    """A quality line per system and its first ``samples`` profiles (one per user)."""
    lines = [
        "## Profile quality",
        "",
        "Read from the text alone, against the history each profile was written from: distinct (distinct texts "
        "among all the system's profiles: 100 % when no two users or samples got the same text), well-formed (a "
        "finished sentence, balanced quotes, no prompt markup), titles "
        'grounded (quoted titles that are in the history) and their stated sentiment true ("Loved X": the user '
        "liked X), figures true (stated averages, like / dislike shares and year ranges within 0.1 rating points "
        "or 1 percentage point of the truth), terms true (the kind of rater a profile calls the user agrees with "
        'their shares of likes and dislikes, and the genres, tags and decades it lists after "Watches mostly", '
        '"tagged", "Drawn to the" are the history\'s: a garbled or made-up word is false), factual consistency '
        "(every check pooled) and repeated 4-grams (share "
        "of a profile's word 4-grams that repeat an earlier one: loops).",
        "",
    ]
    for name, written in systems.items():
        report = quality_report(written.samples())
        lines.append(f"- **{name}** ({report.profiles} profiles): {report.line()}")
    for name, written in systems.items():
        lines += ["", f"Three profiles of {name}:", ""]
        for user, texts in list(written.profiles.items())[:samples]:
            lines.append(f"> user {user}: {texts[0] if texts else '(none)'}")
            lines.append(">")
        if lines[-1] == ">":
            lines.pop()
    return [*lines, ""]


def gate_lines(registry: Any) -> list[str]:
    """Every round's gate decision with its paired intervals (trainer.gate), whether it passed or not."""
    lines = ["## The trainer's gate", ""]
    versions = registry.versions()
    if not versions:
        return [*lines, "No round was trained.", ""]
    lines.append(
        "A candidate is refused on a check only when the 95 % CI of its paired difference from the champion "
        "(candidate - champion, per validation user or per held-out user's pairs) lies wholly below the "
        "tolerance; a check with fewer than 2 units is not compared."
    )
    for version in versions:
        manifest = registry.manifest(version)
        gate = manifest.gate
        verdict = "passed" if gate.get("passed") else "refused"
        lines += ["", f"v{version} ({registry.status(version)}, gate {verdict} against {gate.get('compared_with')}):"]
        lines.append("")
        lines.append("| check | candidate | champion | difference | 95 % CI | units | tolerance | verdict |")
        lines.append("|---|---:|---:|---:|---|---:|---:|---|")
        for c in gate.get("comparisons", []):
            ci = (
                f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
                if c.get("ci_low") is not None
                else ("point comparison" if "units" not in c else "none (1 unit)")
            )
            lines.append(
                f"| {c['name']} | {c['candidate']:.4f} | {c['champion']:.4f} | {c['delta']:+.4f} | {ci} | "
                f"{c.get('units', '-')} | {c['tolerance']:g} | {'pass' if c['passed'] else 'WORSE'} |"
            )
        lines += [f"- {note}" for note in gate.get("notes", [])]
    return [*lines, ""]


async def _read_topic(settings: StreamSettings, name: str, record_type: type) -> list[tuple[int, Any]]:
    """Every record of a topic of the run, with its Kafka timestamp (ms); undecodable ones are skipped."""
    consumer = AIOKafkaConsumer(
        settings.topic(name), **settings.kafka_client_config(), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[tuple[int, Any]] = []
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
        if profile.history_ref is not None and profile.history_ref.event_id in sent:
            out.append((ts - sent[profile.history_ref.event_id]) / 1000)
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


def round_label(status: ModelStatus, gate: dict[str, Any]) -> str:
    """What became of a round that is not the champion. A round the gate passed is promoted right after it is
    published, so one that passed and is not champion was either rolled back or not promoted yet when the report
    was written (the stream phase ends on a clock, not on a promotion)."""
    if status == ModelStatus.ROLLED_BACK:
        return "rolled back"
    if status == ModelStatus.REFUSED or not gate.get("passed"):
        return "refused by the gate"
    return "passed the gate, not yet promoted"


def write_report(demo: Demo, dataset: Dataset, split: DatasetSplit, reader, nano: Path, registry_root: Path) -> Path:
    from lettingo.registry import ModelRegistry

    cfg = demo.config
    users = list(split.test[: cfg.report_users])
    prompts = test_prompts(dataset, split, users)
    written = {"base generator": generated_profiles(nano, None, prompts, cfg.samples_per_user, cfg.seed)}
    registry = ModelRegistry(registry_root)
    champion = registry.champion()
    contrasts: list[tuple[str, str]] = []
    # The champion; or, when the gate refused every round, the latest round, so its effect is still shown.
    trained = champion if champion is not None else registry.latest()
    dpo = None
    if trained is not None:
        manifest = registry.manifest(trained)
        adapter = registry.local_path(trained) if manifest.kind == "lora" else None
        model = registry.base_model_path(manifest.base_model) if adapter else registry.local_path(trained)
        dpo = (
            f"DPO-aligned (v{trained})"
            if trained == champion
            else f"DPO round v{trained} ({round_label(registry.status(trained), manifest.gate)})"
        )
        written[dpo] = generated_profiles(model, adapter, prompts, cfg.samples_per_user, cfg.seed)
        contrasts.append((dpo, "base generator"))
    pairs = [p for _, p in asyncio.run(_read_topic(demo.settings, "preference-pairs", PreferencePair))]
    if pairs:
        sft = sft_on_chosen(nano, pairs, demo.run_dir / "sft-on-p-plus", seed=cfg.seed)
        written["SFT on P+"] = generated_profiles(sft, None, prompts, cfg.samples_per_user, cfg.seed)
        contrasts.append(("SFT on P+", "base generator"))
    if dpo is not None and pairs:
        contrasts.append((dpo, "SFT on P+"))
    # Both held-out ratings (validation and target) as targets: neither was replayed, and both lie after H_u.
    evaluation = EvaluationConfig(targets_per_user=2, draws=10, seed=cfg.seed)
    generated = {name: w.profiles for name, w in written.items()}
    comparison = compare(dataset, split, reader, users, generated, evaluation, contrasts)
    rewards = [r for _, r in asyncio.run(_read_topic(demo.settings, "rewards", Reward))]
    timed_profiles = asyncio.run(_read_topic(demo.settings, "profiles", Profile))
    profiles = [p for _, p in timed_profiles]
    candidates = [c for _, c in asyncio.run(_read_topic(demo.settings, "profile-candidates", ProfileCandidate))]
    served = served_profiles(profiles, candidates, dataset)
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
        f"{evaluation.draws} negative draws. Sentiment: like / neutral / dislike of each held-out item. "
        f"Generators: {cfg.samples_per_user} profiles per user at temperature 1.0, each scored. "
        "SFT on P+: the base generator fine-tuned on the chosen profile of every streamed pair, with the DPO "
        "round's budget. Intervals: 95 % bootstrap over users; differences are paired.",
        "",
        "What each row gives f_Rec on ranking: `recent_only` gives the user's 10 most recent ratings (h_u) and no "
        "profile; every other row gives only a text made from the 70 older ratings (H_u) and never sees h_u: "
        "`raw_history` the ratings themselves as text, `fixed_format` a JSON summary, the generators their profiles. "
        "On MovieLens the last ten ratings predict the next item far better than anything older (DESIGN: recent "
        "ten 37.9 % HR@1 against 28.0 % for the 70 older ones, with an item-kNN scorer), so `recent_only` above a "
        "profile row does not mean a profile is worse than nothing: compare profile rows with each other. On "
        "sentiment every row gets h_u, and the profile rows add their text to it.",
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
        *quality_lines({"served on `profiles` (latest per user)": served, **written}),
        *gate_lines(registry),
    ]
    path = demo.run_dir / "report.md"
    path.write_text("\n".join(lines))
    (demo.run_dir / "report.json").write_text(json.dumps(comparison.as_dict(), indent=2))
    return path
