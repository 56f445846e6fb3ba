"""Reading profiles back against their history: the writers state only true figures and titles, a stored
prompt text is read back into its entries, and ``lettingo quality`` measures an explore file."""

from __future__ import annotations

import random
from pathlib import Path

from typer.testing import CliRunner

from lettingo.cli.main import _register_core, _register_plugins, app
from lettingo.data import LabelScheme, load_dataset, split_dataset
from lettingo.profile_quality import prompt_from_text, quality_report
from lettingo.prompts.profile import profile_prompt, profile_prompt_from_entries
from lettingo.writers import WRITERS


def test_every_writer_states_only_true_figures_and_titles(dataset_path: Path) -> None:
    dataset = load_dataset(dataset_path)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    cases = split_dataset(dataset).cases(dataset, "validation")[:40]
    prompts = [profile_prompt(c.long_history, dataset.items, labels) for c in cases]
    rng = random.Random(0)
    for name, writer in WRITERS.items():
        report = quality_report([(p, [writer(p.entries, rng) for _ in range(3)]) for p in prompts])
        assert report.well_formed == 1.0 and report.repeated_4gram_rate < 0.02, name
        assert report.factual_consistency in (None, 1.0), (name, report)
    assert prompt_from_text(prompts[0].text, prompts[0].user_id, dataset) == prompts[0]
    assert prompt_from_text(prompts[0].text.replace('"', "'"), prompts[0].user_id, dataset) is None


def test_the_quality_command_reads_an_explore_file(dataset_path: Path, tmp_path: Path) -> None:
    _register_core()
    _register_plugins()
    cli = CliRunner()
    out = tmp_path / "cands.jsonl"
    explored = cli.invoke(
        app,
        [
            "explore",
            str(dataset_path),
            "-g",
            "2*writer:strictness",
            "--group",
            "validation",
            "--limit",
            "5",
            "--out",
            str(out),
        ],
    )
    assert explored.exit_code == 0, explored.output
    result = cli.invoke(app, ["quality", str(out), "--dataset", str(dataset_path), "--show", "1"])
    assert result.exit_code == 0, result.output
    assert "cands.jsonl writer:strictness (10 profiles): distinct" in result.output
    assert "figures true 100 %" in result.output and "factual consistency 100 %" in result.output


def _history():
    from lettingo.data import Item, Sentiment
    from lettingo.prompts.profile import HistoryEntry

    def entry(i: int, title: str, genres: tuple[str, ...], year: int, rating: float, tags: tuple[str, ...]):
        sentiment = Sentiment.LIKE if rating >= 4 else Sentiment.DISLIKE if rating <= 2 else Sentiment.NEUTRAL
        return HistoryEntry(Item(str(i), title, genres, year, tags), rating, sentiment)

    # 7 of 10 liked, none disliked: a generous rater
    return [
        entry(1, "Heat (1995)", ("Action", "Crime"), 1995, 5.0, ("aliens", "atmospheric")),
        entry(2, "Casino (1995)", ("Crime",), 1995, 4.0, ("mafia",)),
        entry(3, "Big (1988)", ("Comedy",), 1988, 3.0, ("tom hanks",)),
        *[entry(10 + i, f"Film {i} (2001)", ("Drama",), 2001, 4.5, ("dark comedy",)) for i in range(5)],
        entry(20, "Dull (1999)", ("Drama",), 1999, 3.0, ("boring",)),
        entry(21, "Meh (1999)", ("Drama",), 1999, 3.0, ()),
    ]


def test_the_checker_reads_the_demos_garbled_tags_and_contradicted_rater_kind() -> None:
    """Served by the quick demo: tag words spelled into nonsense, and "hard-to-please" for a user who likes 70 %
    and dislikes 0 % of what they rate. Both are statements about the history, so both must count as false."""
    from lettingo.profile_quality import check_profile

    entries = _history()
    served = check_profile(
        "A hard-to-please viewer: average rating 4.0, likes 70% and dislikes 0% of items. "
        "Liked items are often tagged aliens, chn grishology, cloooking.",
        entries,
    )
    assert (served.figures, served.figures_true) == (3, 3)
    assert (served.terms, served.terms_true) == (2, 0), served.errors
    assert any(e.startswith("rater:") for e in served.errors) and any(e.startswith("tag:") for e in served.errors)
    true = check_profile(
        "An easy-to-please viewer: average rating 4.0, likes 70% and dislikes 0% of items. Liked items are often "
        "tagged aliens, dark comedy and mafia. Watches mostly Drama and Crime. Drawn to the 2000s and 1990s.",
        entries,
    )
    assert (true.terms, true.terms_true, true.errors) == (4, 4, ())
    wrong_words = check_profile("Tends to love Western. Often dislikes Crime. Tagged boring.", entries)
    assert (wrong_words.terms, wrong_words.terms_true) == (3, 0), wrong_words.errors
    report = quality_report([(profile_prompt_from_entries(entries), ["Liked items are often tagged chn grisy."])])
    assert report.terms_true == 0.0 and report.factual_consistency == 0.0 and "terms true 0 %" in report.line()
