"""Log lines that can be neither forged nor flooded (issue 14, item 5).

Two problems a probe found in every long-running process:

* Forgery: a message that carries text from a peer (a Kafka key, a payload excerpt, a client id) may hold a
  line break or a terminal escape, so ``log.warning("dead letter key=%s", key)`` with ``key = "a\\nFORGED ..."``
  writes a second line that looks like the process's own, and ``\\x1b[...`` sequences rewrite a terminal.
  :class:`EscapingFormatter` writes every control character of the *final* message as a visible escape
  (``\\n``, ``\\x1b``, ``\\u2028``), so one log call is always one line. A traceback (``exc_info``,
  ``stack_info``) is still appended on its own lines as usual: it comes from the code, not from a peer.
* Flooding: during a broker outage aiokafka logs every failed connection attempt, metadata refresh and
  coordinator lookup at ERROR: hundreds of lines a second per client, which fill disks and bury the one line
  that matters. :class:`RateLimitFilter` lets one line per (logger, message template) through per interval and
  says, on the next line it lets through, how many it held back.

:func:`configure_safe_logging` installs both on every handler of the root logger. Call it after whatever built
those handlers (``logging.basicConfig``, Faust's worker, which replaces the root handlers when it starts).

Standard library only, and no Kafka or Faust import: this is generic logging code of the core.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

__all__ = [
    "DEFAULT_PREFIXES",
    "EscapingFormatter",
    "RateLimitFilter",
    "configure_safe_logging",
    "escape_controls",
]

#: Loggers that flood while a broker is unreachable: aiokafka (every client of the worker, replay and trainer),
#: kafka-python's names, and Faust's transport (its consumer, producer and aiokafka driver).
DEFAULT_PREFIXES: tuple[str, ...] = ("aiokafka", "kafka", "faust.transport")

#: The plain-text format of the ``lettingo`` CLIs, used when the root logger has no handler yet.
DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# C0 controls (CR, LF, TAB, ESC, ...), DEL, C1 controls (NEL U+0085, CSI U+009B, ...), the Unicode line and
# paragraph separators, and the bidirectional overrides and isolates, which reorder what a reader sees.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control, line-breaking or reordering character written as a visible escape.

    Backslashes are left as they are, so escaping twice changes nothing; a literal ``\\n`` typed by a peer and
    an escaped line feed read the same, which is harmless: neither starts a line."""
    return _UNSAFE.sub(_escape, text)


class EscapingFormatter(logging.Formatter):
    """Formats a record with its message escaped by :func:`escape_controls`: one log call, one line.

    It formats like ``inner`` when given one (so Faust's or another library's layout and colours are kept, and
    only the message is escaped), else like :class:`logging.Formatter` with ``fmt``. The record is restored
    afterwards, so other handlers see it unchanged. The traceback of ``exc_info`` and ``stack_info`` is still
    appended on its own lines."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: str = "%",
        *,
        inner: logging.Formatter | None = None,
    ) -> None:
        super().__init__(fmt, datefmt, style)  # type: ignore[arg-type]
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        msg, args = record.msg, record.args
        record.msg, record.args = escape_controls(record.getMessage()), ()
        try:
            return self.inner.format(record) if self.inner is not None else super().format(record)
        finally:
            record.msg, record.args = msg, args


class RateLimitFilter(logging.Filter):
    """At most one record per (logger name, message template) per ``interval_s``, for WARNING and above from
    loggers under ``prefixes``; anything else passes untouched.

    The first record of a key passes; the ones that follow within ``interval_s`` are counted and dropped; the
    first one after it passes with ``(suppressed N similar messages in the last T s)`` appended, and starts the
    next interval. The key is the template (``record.msg``), not the formatted text, so a peer cannot open new
    keys through a message's arguments. At most ``max_keys`` keys are remembered (least recently seen dropped
    first), so memory stays bounded whatever is logged. Thread-safe.

    Attach one instance to several handlers: each record is decided once and every handler follows that
    decision, so a second handler neither counts it again nor drops it."""

    def __init__(
        self,
        prefixes: Iterable[str] = DEFAULT_PREFIXES,
        interval_s: float = 10.0,
        *,
        level: int = logging.WARNING,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)
        self.interval_s = interval_s
        self.level = level
        self.max_keys = max_keys
        self.clock = clock
        self._seen: OrderedDict[tuple[str, str], list[float]] = OrderedDict()  # key -> [interval start, dropped]
        self._lock = threading.Lock()
        self._mark = f"_lettingo_rate_limit_{id(self)}"  # this filter's decision, stored on the record

    def limits(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        decided = record.__dict__.get(self._mark)
        if decided is None:
            decided = self._decide(record)
            setattr(record, self._mark, decided)
        return decided

    def _decide(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level or not self.limits(record.name):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is None:
                self._seen[key] = [now, 0]
                if len(self._seen) > self.max_keys:
                    self._seen.popitem(last=False)
                return True
            self._seen.move_to_end(key)
            started, dropped = entry
            if now - started < self.interval_s:
                entry[1] += 1
                return False
            entry[0], entry[1] = now, 0
        if dropped:
            # no '%' in the note, so the template still formats with the record's own arguments
            record.msg = f"{record.msg} (suppressed {dropped:.0f} similar messages in the last {now - started:.0f} s)"
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object a line (``LETTINGO_LOG_FORMAT=json``): time, level, logger, message, and the structured
    fields a call passes as ``extra`` (``user_id``, ``profile_id``, ``model_version``). JSON escapes every
    control character, so a JSON line cannot be forged either."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter("{asctime}{levelname}{name}{message}", style="{", rename_fields={"levelname": "level"})


def configure_safe_logging(
    *,
    prefixes: Iterable[str] = DEFAULT_PREFIXES,
    interval_s: float = 10.0,
    level: int | None = None,
    json_lines: bool = False,
) -> RateLimitFilter:
    """Escape and rate-limit every handler of the root logger; return the rate limiter in force.

    Idempotent: a handler keeps the escaping formatter and the shared limiter it already has (the first call's
    ``prefixes`` and ``interval_s`` stay in force). With no root handler yet (``python -m ...`` before any set-up)
    it first adds one on stderr in the CLIs' plain format, so early warnings are escaped too; ``level``, when
    given, sets the root logger's level. Handlers added later are not covered: call it again after
    any set-up that replaces them (the stream worker does, from Faust's ``on_setup_root_logger``). With
    ``json_lines`` (entry points pass whether ``LETTINGO_LOG_FORMAT`` is ``json``) every handler writes JSON lines."""
    root = logging.getLogger()
    if not root.handlers:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
        root.addHandler(handler)
    if level is not None:
        root.setLevel(level)
    limiter = next(
        (f for h in root.handlers for f in h.filters if isinstance(f, RateLimitFilter)),
        None,
    ) or RateLimitFilter(prefixes, interval_s)
    for handler in root.handlers:
        if json_lines and not _is_json(handler.formatter):
            handler.setFormatter(EscapingFormatter(inner=json_formatter()))
        elif not isinstance(handler.formatter, EscapingFormatter):
            handler.setFormatter(EscapingFormatter(inner=handler.formatter))
        if not any(isinstance(f, RateLimitFilter) for f in handler.filters):
            handler.addFilter(limiter)
    return limiter


def _is_json(formatter: logging.Formatter | None) -> bool:
    inner = getattr(formatter, "inner", formatter)
    return type(inner).__name__ == "JsonFormatter"
