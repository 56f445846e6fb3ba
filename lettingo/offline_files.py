"""The offline pipeline's JSONL files: one typed record per line, read, appended and resumed only here.

==============  =================================  ==========================  ================
file            written by                         row                         resume key
==============  =================================  ==========================  ================
explore output  ``lettingo explore``               :class:`ExploredCase`       (user, position)
rewards         ``lettingo evaluate``              :class:`ScoredCase`         (user, position)
pairs           ``lettingo pairs``                 :class:`PairRow`            pair id
pairs progress  ``lettingo pairs`` (``OUT.done``)  :class:`CaseKey`            (user, position)
==============  =================================  ==========================  ================

The rows extend the topic records where the concept is the same: every candidate is a
:class:`~lettingo.records.CandidateText` (the base of the topic's ``ProfileCandidate``), and a pairs line is a
:class:`~lettingo.records.PreferencePair` plus its provenance, so the trainer reads a pairs file and the pairs
topic with one model.

A row is identified by its user *and* its history position (which target the history precedes): one file may
hold several positions of the same user. Appending to a file first cuts a torn last line (a crash mid-write)
and reads the keys already there, so a restarted command skips them; every row is one flushed line.

A line that is not a row of the expected kind raises :class:`OfflineFileError` naming the file and the line,
and says which kind it is when it is a row of another kind (an explore file given where rewards are expected).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Generic, Literal, Self, TypeVar

from pydantic import Field, field_validator

from lettingo.errors import InputError
from lettingo.records import (
    CandidateText,
    Id,
    InputLimits,
    PreferencePair,
    Record,
    RecordError,
    decode_record,
)

log = logging.getLogger(__name__)

CaseId = tuple[str, int]


class OfflineFileError(InputError):
    """A file that is missing, of the wrong kind, or has a line that is not a valid row.

    ``reason`` is a short label: ``missing``, ``wrong_kind``, or :class:`~lettingo.records.RecordError`'s reason
    (``invalid_json``, ``invalid_record``, ``oversized``, ...); ``detail`` is the message without the place.
    """

    def __init__(self, path: Path, detail: str, line: int | None = None, reason: str = "invalid_record") -> None:
        super().__init__(f"{path}{f' line {line}' if line is not None else ''}: {detail}")
        self.path, self.line, self.reason, self.detail = path, line, reason, detail


# --- rows -------------------------------------------------------------------------------------------------------
class ExploredCandidate(CandidateText):
    """One profile sampled by ``lettingo explore``, with its decoding settings and cost."""

    temperature: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    finished: bool | None = None


class _Case(Record):
    """A user at one history position: the prompt over the history before that position's target."""

    user_id: Id
    position: int = Field(default=0, ge=0)  # which target the history precedes (0: the user's last rating)
    history_ref: str = ""  # "<count>@<last item id>:<last ts>": which ratings the prompt saw
    prompt: str = ""  # not a topic's Text: a long history's prompt may exceed its limit
    messages: list[dict[str, str]] = Field(default_factory=list)
    duplicates: int = 0  # samples dropped as repeats of an earlier candidate
    empty: int = 0  # samples dropped as blank

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_text(cls, value: Any) -> Any:
        # an explore line may carry the prompt object ({"text": ..., "messages": ...}) rather than its text
        return value.get("text", "") if isinstance(value, dict) else value

    @property
    def case(self) -> CaseId:
        return (self.user_id, self.position)


class ExploredCase(_Case):
    """A line of the explore output: the candidates of one user at one position."""

    candidates: list[ExploredCandidate]


class ScoredCandidate(CandidateText):
    """A candidate scored through f_Rec on the user's held-out targets."""

    reward: float
    correct_rate: float
    n_cases: int = Field(ge=0)
    n_unparsable: int = Field(ge=0)


class ScoredCase(_Case):
    """A line of the rewards file: the explore line's case, its candidates scored, and how they were scored."""

    task: Literal["ranking", "sentiment"]
    reader_version: str
    evaluation: dict[str, Any] = Field(default_factory=dict)  # lettingo.evaluation.EvaluationConfig.as_dict()
    candidates: list[ScoredCandidate]

    @property
    def offset(self) -> int:
        return int(self.evaluation.get("offset", 0))


class PairRow(PreferencePair):
    """A line of the pairs file: the topic's preference pair (what the trainer reads) plus its provenance."""

    chosen_generator: str = ""
    rejected_generator: str = ""
    reader_version: str = ""


class CaseKey(Record):
    """A line of a progress file: one case a command has finished (it may have written no row for it)."""

    user_id: Id
    position: int = Field(ge=0)

    @property
    def case(self) -> CaseId:
        return (self.user_id, self.position)


# --- files ------------------------------------------------------------------------------------------------------
R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class FileKind(Generic[R]):
    """One kind of file: its row type, who writes it, and what identifies a row (the resume key)."""

    name: str
    row: type[R]
    written_by: str
    key: Callable[[R], Hashable]
    max_line_bytes: int = 1 << 24

    def decode(self, path: Path, line: int, raw: bytes) -> R:
        """Line ``line`` of ``path`` as a row, or :class:`OfflineFileError` saying what is wrong with it."""
        try:
            return decode_record(self.row, raw, self._limits)
        except RecordError as e:
            other = _recognise(raw, but=self)
            if other is not None:
                raise _wrong_kind(path, line, other, self) from None
            raise OfflineFileError(path, f"not a line of {self.name}: {e}", line, e.reason) from None

    def read(self, path: Path) -> Iterator[R]:
        """Every row of ``path``, in order; blank lines are skipped."""
        for number, raw in self.lines(path):
            yield self.decode(path, number, raw)

    def lines(self, path: Path) -> Iterator[tuple[int, bytes]]:
        """(line number, bytes) of every non-blank line of ``path``, for readers that judge lines themselves."""
        if not path.is_file():
            detail = f"no such file (expected {self.name}, written by `{self.written_by}`)"
            raise OfflineFileError(path, detail, reason="missing")
        with path.open("rb") as stream:
            for number, raw in enumerate(stream, start=1):
                if raw.strip():
                    yield number, raw

    def finished(self, path: Path) -> set[Hashable]:
        """The keys of the rows in ``path`` (none when it does not exist), after cutting a torn last line.

        An output is held to its own kind more strictly than an input: a line that is also a row of a more
        specific kind (a rewards line in an explore output) is refused, not taken for a finished case."""
        if not path.exists():
            return set()
        _cut_torn_line(path)
        keys: set[Hashable] = set()
        for number, raw in self.lines(path):
            row = self.decode(path, number, raw)
            if not keys and (other := _more_specific(raw, than=self)) is not None:
                raise _wrong_kind(path, number, other, self)
            keys.add(self.key(row))
        return keys

    def append(self, path: Path) -> Appender[R]:
        """Append rows to ``path`` (made with its folder if missing), one flushed line each."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return Appender(self, path)

    @property
    def _limits(self) -> InputLimits:
        # offline inputs: any finite, non-negative timestamp, any rating scale
        inf = float("inf")
        return InputLimits(self.max_line_bytes, ts_min=0.0, ts_max_ahead_s=inf, rating_min=-inf, rating_max=inf)


class Appender(Generic[R]):
    """Writes rows of one kind to the end of a file; a context manager."""

    def __init__(self, kind: FileKind[R], path: Path) -> None:
        self.kind, self.path = kind, path
        self._stream: BinaryIO = path.open("ab")

    def write(self, row: R) -> None:
        if not isinstance(row, self.kind.row):
            raise TypeError(f"{self.path} holds {self.kind.name}: a {self.kind.row.__name__}, not {type(row).__name__}")
        self._stream.write(row.model_dump_json().encode() + b"\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _cut_torn_line(path: Path) -> None:
    """Drop what follows the last newline: a line a crash left half-written (every row ends with one)."""
    with path.open("r+b") as stream:
        size = stream.seek(0, 2)
        tail = 0
        while tail < size:
            chunk = min(1 << 16, size - tail)
            stream.seek(size - tail - chunk)
            newline = stream.read(chunk).rfind(b"\n")
            if newline >= 0:
                tail += chunk - newline - 1
                break
            tail += chunk
        if tail:
            log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run", path, tail)
            stream.truncate(size - tail)


EXPLORE = FileKind("explore output", ExploredCase, "lettingo explore", lambda row: row.case)
REWARDS = FileKind("rewards", ScoredCase, "lettingo evaluate", lambda row: row.case)
PAIRS = FileKind("pairs", PairRow, "lettingo pairs", lambda row: row.pair_id, max_line_bytes=1 << 20)
PROGRESS = FileKind("a progress file", CaseKey, "lettingo pairs", lambda row: row.case)

# The most specific first: a rewards line is also a valid explore line.
_KINDS: tuple[FileKind[Any], ...] = (PAIRS, REWARDS, EXPLORE, PROGRESS)


def _recognise(raw: bytes, but: FileKind[Any]) -> FileKind[Any] | None:
    """The kind of file ``raw`` is a valid line of, if it is not a line of ``but`` at all: one that lacks some of
    ``but``'s required fields (a line that has them all is ``but``'s, with a wrong value)."""
    try:
        fields = json.loads(raw)
    except ValueError:
        return None
    required = {name for name, field in but.row.model_fields.items() if field.is_required()}
    if not isinstance(fields, dict) or required <= fields.keys():
        return None
    return _valid_as(raw, [kind for kind in _KINDS if kind is not but])


def _more_specific(raw: bytes, than: FileKind[Any]) -> FileKind[Any] | None:
    """The kind listed before ``than`` in :data:`_KINDS` that ``raw`` is also a valid line of, if any."""
    return _valid_as(raw, _KINDS[: _KINDS.index(than)])


def _valid_as(raw: bytes, kinds: Sequence[FileKind[Any]]) -> FileKind[Any] | None:
    for kind in kinds:
        try:
            decode_record(kind.row, raw, kind._limits)
        except RecordError:
            continue
        return kind
    return None


def _wrong_kind(path: Path, line: int, found: FileKind[Any], expected: FileKind[Any]) -> OfflineFileError:
    detail = f"a line of {found.name} (written by `{found.written_by}`), not of {expected.name}"
    return OfflineFileError(path, detail, line, "wrong_kind")


def progress_path(out: Path) -> Path:
    """Where a command that may write no row for a case (``lettingo pairs``) records the cases it finished."""
    return out.with_name(out.name + ".done")
