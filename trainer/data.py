"""Preference pairs in: read them (JSONL files or decoded topic records), validate every one, split off held-out.

TRL silently drops a pair whose prompt fills ``max_length`` and truncates long completions. Here every pair that
cannot be trained on as it is gets rejected *before* training, with a reason, and the counts travel into the
version's manifest and the command's output.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lettingo.offline_files import PAIRS, OfflineFileError
from lettingo.records import PreferencePair

log = logging.getLogger(__name__)

TokenCounter = Callable[[str], int]


@dataclass
class PairReport:
    """What came in and what was rejected, by reason (``invalid_record``, ``empty``, ``identical``, ...)."""

    received: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_rejected: dict[str, str] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.received - sum(self.rejected.values())

    def reject(self, reason: str, what: str) -> None:
        self.rejected[reason] += 1
        self.first_rejected.setdefault(reason, what)
        log.debug("rejected pair (%s): %s", reason, what)

    def merge(self, other: PairReport) -> None:
        self.received += other.received
        self.rejected.update(other.rejected)
        for reason, what in other.first_rejected.items():
            self.first_rejected.setdefault(reason, what)
        self.sources.extend(other.sources)

    def summary(self) -> str:
        rejected = ", ".join(f"{n} {reason}" for reason, n in sorted(self.rejected.items())) or "none"
        return f"{self.received} pairs received, {self.accepted} accepted, rejected: {rejected}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "first_rejected": self.first_rejected,
            "sources": self.sources,
        }


def read_pairs_jsonl(path: Path, report: PairReport) -> list[PreferencePair]:
    """Decode every line of ``path`` (:data:`lettingo.offline_files.PAIRS`); undecodable lines are rejected
    (counted), never skipped silently. A line of another kind of file (explore output, rewards) raises
    :class:`~lettingo.offline_files.OfflineFileError`: the whole file is the wrong one."""
    pairs: list[PreferencePair] = []
    lines = 0
    for number, raw in PAIRS.lines(path):
        lines += 1
        report.received += 1
        try:
            pairs.append(PAIRS.decode(path, number, raw))
        except OfflineFileError as e:
            if e.reason == "wrong_kind":
                raise
            report.reject(e.reason, f"{path.name}:{number}: {e.detail}")
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    report.sources.append({"file": str(path), "sha256": digest, "records": lines})
    return pairs


def validate_pairs(
    pairs: Iterable[PreferencePair], count_tokens: TokenCounter, max_length: int, report: PairReport
) -> list[PreferencePair]:
    """Keep the pairs DPO can train on as they are; reject the others into ``report``.

    ``count_tokens`` must count like training does (prompt + completion, EOS included).
    """
    kept: list[PreferencePair] = []
    seen: set[str] = set()
    for pair in pairs:
        reason = _rejection_reason(pair, seen, count_tokens, max_length)
        if reason:
            report.reject(reason, f"pair {pair.pair_id} of user {pair.user_id}")
        else:
            seen.add(pair.pair_id)
            kept.append(pair)
    return kept


def _rejection_reason(pair: PreferencePair, seen: set[str], count_tokens: TokenCounter, max_length: int) -> str | None:
    if not (pair.prompt.strip() and pair.chosen.strip() and pair.rejected.strip()):
        return "empty"
    if pair.chosen.strip() == pair.rejected.strip():
        return "identical"
    if pair.pair_id in seen:
        return "duplicate"
    longest = max(count_tokens(pair.prompt + pair.chosen), count_tokens(pair.prompt + pair.rejected))
    if longest > max_length:
        return "too_long"
    return None


def render_pairs(pairs: Sequence[PreferencePair], tokenizer: Any) -> list[PreferencePair]:
    """The pairs as the model reads them: the prompt through its chat template and each profile as the model
    writes it after it (lettingo.prompts.rendering); the nano's pairs are unchanged."""
    from lettingo.prompts.rendering import model_completion, model_prompt, renders_plain

    if renders_plain(tokenizer):
        return list(pairs)
    out = []
    for pair in pairs:
        try:
            prompt = model_prompt(tokenizer, pair.prompt)
        except ValueError:
            out.append(pair)  # not a profile prompt (a test's synthetic pair): as it is
            continue
        chosen, rejected = model_completion(tokenizer, pair.chosen), model_completion(tokenizer, pair.rejected)
        out.append(pair.model_copy(update={"prompt": prompt, "chosen": chosen, "rejected": rejected}))
    return out


def longest_pair(pairs: Iterable[PreferencePair], count_tokens: TokenCounter) -> int:
    """Tokens of the longest prompt + completion among ``pairs`` (0 without pairs)."""
    return max((max(count_tokens(p.prompt + p.chosen), count_tokens(p.prompt + p.rejected)) for p in pairs), default=0)


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """Count tokens the way TRL's DPO preprocessing does: the tokenized text plus the EOS it appends."""

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"]) + 1

    return count


def split_held_out(
    pairs: Sequence[PreferencePair], fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Split by user (a stable hash with ``seed``), so a held-out user's pairs never reach training."""
    if fraction <= 0:
        return list(pairs), []
    threshold = int(fraction * 10_000)

    def held_out(user_id: str) -> bool:
        bucket = int(hashlib.sha256(f"{seed}:{user_id}".encode()).hexdigest()[:8], 16) % 10_000
        return bucket < threshold

    train = [p for p in pairs if not held_out(p.user_id)]
    evaluation = [p for p in pairs if held_out(p.user_id)]
    return train, evaluation


def to_dpo_rows(pairs: Iterable[PreferencePair]) -> list[dict[str, str]]:
    """The rows TRL's DPOTrainer takes (standard, non-conversational format with an explicit prompt)."""
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
