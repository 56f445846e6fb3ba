"""Untrusted text (titles, tags, descriptions, profiles) inside prompts.

Every piece of item or user text is put in as a JSON string literal: quotes, backslashes, newlines and
control characters are escaped, the Unicode line breaks JSON leaves raw (U+0085, U+2028, U+2029) too, and
``<`` / ``>`` become ``\\u003c`` / ``\\u003e``, so that no item can open or close the prompt's own ``<tag>``
delimiters or start a new line of instructions. Lengths are capped.
"""

from __future__ import annotations

import json

MAX_TITLE_CHARS = 120
MAX_TEXT_CHARS = 2_000
_ESCAPES = str.maketrans({c: f"\\u{ord(c):04x}" for c in "<>\x85\u2028\u2029"})


def quote(text: str, max_chars: int = MAX_TITLE_CHARS) -> str:
    """``text`` as a single-line, delimiter-safe JSON string, cut to ``max_chars`` characters."""
    cut = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
    return json.dumps(cut, ensure_ascii=False).translate(_ESCAPES)


def block(tag: str, body: str) -> str:
    """A delimited section; ``body`` must already be made of :func:`quote`-d values."""
    return f"<{tag}>\n{body}\n</{tag}>"


_UNSAFE_IN_OUTPUT = [*map(chr, range(32)), "\x7f", *map(chr, range(0x80, 0xA0)), "<", ">", "\u2028", "\u2029"]
_OUTPUT_ESCAPES = str.maketrans({c: f"\\u{ord(c):04x}" for c in _UNSAFE_IN_OUTPUT if c not in "\n\t"})


def escape_output(text: str) -> str:
    """Generated profile text made safe to embed as the prompts embed catalogue text: ``<`` / ``>``, control
    characters and Unicode line separators escaped as JSON escapes, so a quoted title keeps the form it had in
    the prompt and no profile can open or close a ``<tag>`` of a later prompt. Newlines and tabs stay."""
    return text.translate(_OUTPUT_ESCAPES)
