"""Pair input: every rejected pair is counted with its reason; held-out pairs are split by user."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.data import PairReport, read_pairs_jsonl, split_held_out, to_dpo_rows, validate_pairs
from trainer.tiny_model import synthetic_pairs


def count_words(text: str) -> int:
    return len(text.split()) + 1


def test_validation_counts_every_rejected_pair_by_reason(tmp_path: Path) -> None:
    good = synthetic_pairs(5, seed=1)
    empty = good[0].model_copy(update={"pair_id": "empty", "chosen": "   "})
    identical = good[1].model_copy(update={"pair_id": "identical", "rejected": good[1].chosen})
    too_long = good[2].model_copy(update={"pair_id": "long", "chosen": " likes" * 200})
    duplicate = good[3]
    path = tmp_path / "pairs.jsonl"
    lines = [p.model_dump_json() for p in [*good, empty, identical, too_long, duplicate]]
    lines += ["{not json", json.dumps({"pair_id": "x"}), ""]
    path.write_text("\n".join(lines) + "\n")

    report = PairReport()
    pairs = read_pairs_jsonl(path, report)
    kept = validate_pairs(pairs, count_words, max_length=64, report=report)

    assert [p.pair_id for p in kept] == [p.pair_id for p in good]
    assert report.received == 11
    assert report.accepted == 5
    assert dict(report.rejected) == {
        "invalid_json": 1,
        "invalid_record": 1,
        "empty": 1,
        "identical": 1,
        "too_long": 1,
        "duplicate": 1,
    }
    assert report.first_rejected["invalid_json"].startswith("pairs.jsonl:10:")
    assert report.sources[0]["records"] == 11 and len(report.sources[0]["sha256"]) == 64
    assert "5 accepted" in report.summary() and "1 too_long" in report.summary()


def test_held_out_pairs_are_split_by_user_and_deterministically() -> None:
    pairs = synthetic_pairs(200, seed=3, users=40)
    train, held_out = split_held_out(pairs, fraction=0.25, seed=7)
    assert len(train) + len(held_out) == 200
    assert 0 < len(held_out) < 100
    assert not {p.user_id for p in train} & {p.user_id for p in held_out}
    assert split_held_out(pairs, fraction=0.25, seed=7) == (train, held_out)
    assert split_held_out(pairs, fraction=0.0, seed=7) == (pairs, [])


def test_rows_are_in_trl_standard_format() -> None:
    pair = synthetic_pairs(1)[0]
    assert to_dpo_rows([pair]) == [{"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}]
