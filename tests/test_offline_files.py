"""The offline JSONL files (explore, rewards, pairs): typed rows, one reader and writer, resume by (user, position)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lettingo.cli.main import main
from lettingo.cli.pipeline_commands import pairs
from lettingo.errors import InputError
from lettingo.offline_files import EXPLORE, PAIRS, REWARDS, OfflineFileError, ScoredCase
from trainer.data import PairReport, read_pairs_jsonl


def _app(command) -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    return app


def _rewards_row(user: str, position: int) -> dict:
    """A rewards line as `lettingo evaluate` writes it: profile ids depend on the history, so on the position."""
    candidates = [
        {
            "profile_id": f"{user}p{position}c{n}",
            "generator": "writer:titles",
            "model_version": "writers-1",
            "seed": n,
            "text": f"Profile {n} of user {user} at position {position}.",
            "reward": reward,
            "correct_rate": reward,
            "n_cases": 2,
            "n_unparsable": 0,
        }
        for n, reward in enumerate((1.0, 0.5, 0.0))
    ]
    return {
        "user_id": user,
        "position": position,
        "history_ref": f"{10 - position}@i{position}:{position}",
        "prompt": f"History of {user} before position {position}.\n\nProfile:",
        "task": "ranking",
        "reader_version": "embedding-test",
        "evaluation": {"offset": position},
        "candidates": candidates,
    }


def _explore_row(user: str, position: int) -> dict:
    row = _rewards_row(user, position)
    keep = ("profile_id", "generator", "model_version", "seed", "text")
    return {
        "user_id": user,
        "position": position,
        "history_ref": row["history_ref"],
        "prompt": row["prompt"],
        "candidates": [{k: c[k] for k in keep} | {"temperature": 1.0, "finished": True} for c in row["candidates"]],
    }


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(command, *args: str):
    return CliRunner().invoke(_app(command), [str(a) for a in args])


def test_pairs_of_two_history_positions_of_the_same_users_share_one_out(tmp_path: Path) -> None:
    users = ["1", "2", "3"]
    first = _write(tmp_path / "rewards_p1.jsonl", [_rewards_row(u, 1) for u in users])
    second = _write(tmp_path / "rewards_p2.jsonl", [_rewards_row(u, 2) for u in users])
    out = tmp_path / "pairs.jsonl"
    for rewards in (first, second):
        done = _run(pairs, rewards, "--out", out, "--max-pairs-per-user", "2")
        assert done.exit_code == 0, done.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    by_position = {p: [w for w in written if f"p{p}c" in w["chosen_profile_id"]] for p in (1, 2)}
    assert len(by_position[1]) == len(by_position[2]) == 2 * len(users)
    assert len({w["pair_id"] for w in written}) == len(written)


def test_a_file_of_the_wrong_kind_is_named_with_its_line(tmp_path: Path) -> None:
    explored = _write(tmp_path / "cands.jsonl", [_explore_row("1", 0)])
    with pytest.raises(OfflineFileError) as error:
        list(REWARDS.read(explored))
    assert str(error.value) == (
        f"{explored} line 1: a line of explore output (written by `lettingo explore`), not of rewards"
    )
    assert isinstance(error.value, InputError) and error.value.reason == "wrong_kind"

    rewards = _write(tmp_path / "rewards.jsonl", [_rewards_row("1", 0)])
    with pytest.raises(OfflineFileError, match=r"rewards.jsonl line 1: a line of rewards .* not of pairs"):
        read_pairs_jsonl(rewards, PairReport())  # the trainer refuses the file, it does not count lines
    pair_file = _write(tmp_path / "pairs.jsonl", [])
    pair_file.write_text(json.dumps({"user_id": "1", "pair_id": "x", "prompt": "P"}) + "\n")
    report = PairReport()
    assert read_pairs_jsonl(pair_file, report) == [] and report.rejected == {"invalid_record": 1}


def test_a_corrupt_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rewards.jsonl"
    path.write_text(json.dumps(_rewards_row("1", 0)) + "\n\n{not json\n")
    rows = REWARDS.read(path)
    assert next(rows).case == ("1", 0)
    with pytest.raises(OfflineFileError, match=r"^\S*rewards.jsonl line 3: not a line of rewards: ") as error:
        next(rows)
    assert error.value.line == 3 and error.value.reason == "invalid_json"

    bad = _rewards_row("2", 0)
    bad["candidates"][0]["reward"] = "high"
    path.write_text(json.dumps(_rewards_row("1", 0)) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(OfflineFileError, match=r"line 2: not a line of rewards: .*candidates.0.reward"):
        list(REWARDS.read(path))
    with pytest.raises(OfflineFileError, match=r"nope.jsonl: no such file \(expected rewards") as missing:
        list(REWARDS.read(tmp_path / "nope.jsonl"))
    assert missing.value.reason == "missing" and missing.value.line is None


def test_resume_cuts_a_torn_last_line_and_keys_rows_by_user_and_position(tmp_path: Path) -> None:
    out = tmp_path / "rewards.jsonl"
    assert REWARDS.finished(out) == set()
    with REWARDS.append(out) as sink:
        for user, position in (("1", 1), ("1", 2), ("2", 1)):
            sink.write(ScoredCase.model_validate(_rewards_row(user, position)))
    complete = out.read_bytes()
    out.write_bytes(complete + json.dumps(_rewards_row("2", 2)).encode()[:50])  # a crash mid-write
    assert REWARDS.finished(out) == {("1", 1), ("1", 2), ("2", 1)}
    assert out.read_bytes() == complete
    with REWARDS.append(out) as sink:
        with pytest.raises(TypeError, match="holds rewards"):
            sink.write(EXPLORE.row.model_validate(_explore_row("2", 2)))  # type: ignore[arg-type]
        sink.write(ScoredCase.model_validate(_rewards_row("2", 2)))
    assert [row.case for row in REWARDS.read(out)] == [("1", 1), ("1", 2), ("2", 1), ("2", 2)]
    # a row written as rewards reads back as the same record, and as explore output (evaluate may re-score it)
    assert next(REWARDS.read(out)) == ScoredCase.model_validate(_rewards_row("1", 1))
    assert next(EXPLORE.read(out)).candidates[0].text == "Profile 0 of user 1 at position 1."

    out.write_bytes(b"{torn}\n" + complete)  # a corrupt line before the end is not a crash's: refused
    with pytest.raises(OfflineFileError, match="line 1"):
        REWARDS.finished(out)


def test_a_file_with_only_a_torn_line_resumes_from_nothing(tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    out.write_bytes(b'{"pair_id": "abc"')
    assert PAIRS.finished(out) == set() and out.read_bytes() == b""


def test_pairs_resumes_by_case_after_a_crash(tmp_path: Path) -> None:
    rows = [_rewards_row(u, p) for u in ("1", "2") for p in (1, 2)]
    rewards = _write(tmp_path / "rewards.jsonl", rows)
    out = tmp_path / "pairs.jsonl"
    assert _run(pairs, rewards, "--out", out).exit_code == 0
    complete, progress = out.read_text(), out.with_name("pairs.jsonl.done")
    assert [json.loads(line) for line in progress.read_text().splitlines()] == [
        {"user_id": u, "position": p} for u in ("1", "2") for p in (1, 2)
    ]
    # a crash after user 1's second position was written but before it was recorded as finished, mid-record
    kept = [*complete.splitlines(keepends=True)[:4], '{"pair_id": "torn']
    out.write_text("".join(kept))
    progress.write_text(progress.read_text().splitlines(keepends=True)[0] + '{"user_id": "1", "posi')
    done = _run(pairs, rewards, "--out", out)
    assert done.exit_code == 0, done.output
    assert "pairs from 3 cases (1 already done)" in done.output
    assert _pair_ids(out.read_text()) == _pair_ids(complete)  # nothing lost, nothing twice


def _pair_ids(text: str) -> list[str]:
    return [json.loads(line)["pair_id"] for line in text.splitlines()]


def test_the_cli_reports_a_wrong_file_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    explored = _write(tmp_path / "cands.jsonl", [_explore_row("1", 0), _explore_row("2", 0)])
    out = tmp_path / "pairs.jsonl"
    assert _run(pairs, _write(tmp_path / "rewards.jsonl", [_rewards_row("1", 0)]), "--out", out).exit_code == 0
    for command in (["pairs", str(explored)], ["evaluate", str(out)]):
        with pytest.raises(SystemExit) as exit_info:  # evaluate reads its input before it loads the dataset
            main([*command, "--out", str(tmp_path / "out.jsonl"), "--dataset", str(tmp_path / "none")])
        assert exit_info.value.code == InputError.exit_code
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("lettingo: error: ") and " line 1: a line of " in line


def test_an_output_of_another_kind_is_not_resumed_into(tmp_path: Path) -> None:
    """A rewards line is also a valid explore line (evaluate may re-score one), but `explore --out rewards.jsonl`
    must not take the rewards for finished cases and append explore lines to them."""
    rewards = _write(tmp_path / "rewards.jsonl", [_rewards_row("1", 0)])
    before = rewards.read_bytes()
    with pytest.raises(OfflineFileError, match=r"rewards.jsonl line 1: a line of rewards .*, not of explore output"):
        EXPLORE.finished(rewards)
    assert rewards.read_bytes() == before
