"""Which part of a user's history something was built from: the typed history reference.

A reference names the first ``count`` events of a user's event sequence and the id of the last of them. Records
carry it as the JSON string ``"<count>@<event_id>"`` (the stream's event ids; offline, ``lettingo explore``
writes ``<item id>:<ts>`` of the last rating); ``"0@"`` is an empty history. A record may also name no history
(the JSON string ``""``): that is ``None`` here, never a made-up count, so each decision states what an unnamed
history means to it (:func:`lettingo.regeneration.is_stale`, :meth:`lettingo.user_state.UserState.events_up_to`).

References order by ``count`` alone: within one user's sequence, a longer history is a later one. Two references
of the same count are neither older nor newer than each other, whatever their event ids; they are equal only when
their event ids are too.

:data:`HistoryRefField` is the pydantic field type: it reads and writes the same string, so records written before
this type existed decode unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

_FORM = re.compile(r"(0|[1-9][0-9]*)@(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True, eq=True)
class HistoryRef:
    count: int
    event_id: str = ""

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"a history reference counts events from 0, not {self.count}")

    @classmethod
    def parse(cls, text: str) -> HistoryRef | None:
        """``"<count>@<event_id>"`` as a reference; ``""`` (no history named) as None. The count is written
        without sign or leading zeros, so a parsed reference writes back the same string."""
        if text == "":
            return None
        match = _FORM.fullmatch(text)
        if match is None:
            raise ValueError(f"a history reference is '<count>@<event id>', not {text[:60]!r}")
        return cls(int(match.group(1)), match.group(2))

    @classmethod
    def of(cls, events: int, last_event_id: str) -> HistoryRef:
        """The history of ``events`` events ending with ``last_event_id`` (no event id for an empty history)."""
        return cls(events, last_event_id if events else "")

    def __str__(self) -> str:
        return f"{self.count}@{self.event_id}"

    def __lt__(self, other: HistoryRef) -> bool:
        return self.count < other.count

    def __le__(self, other: HistoryRef) -> bool:
        return self.count <= other.count

    def __gt__(self, other: HistoryRef) -> bool:
        return self.count > other.count

    def __ge__(self, other: HistoryRef) -> bool:
        return self.count >= other.count


def _validate(value: Any) -> HistoryRef | None:
    if value is None or isinstance(value, HistoryRef):
        return value
    if isinstance(value, str):
        return HistoryRef.parse(value)
    raise ValueError(f"a history reference is a string, not {type(value).__name__}")


def to_wire(ref: HistoryRef | None) -> str:
    """The reference as records write it: ``""`` for no history named."""
    return "" if ref is None else str(ref)


# A record's history reference: the wire's string, a HistoryRef (or None, for "") in Python.
HistoryRefField = Annotated[
    HistoryRef | None,
    PlainValidator(_validate),
    PlainSerializer(to_wire, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^$|^(0|[1-9][0-9]*)@"}),
]
