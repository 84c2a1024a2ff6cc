"""Text for a terminal: names and messages made harmless before they are printed.

File and member names, host names and event text come from the customer's bundle; printed raw, an
escape sequence in them can rewrite the screen, forge a line ('finding: ...'), or hide text (bidi
overrides). `safe()` shows every such character as a visible escape instead.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_UNSAFE_KEEP_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object, *, keep_lines: bool = False) -> str:
    """`text` with control and invisible formatting characters shown as \\xNN / \\uNNNN escapes.

    One-line messages escape newlines and tabs too; `keep_lines=True` keeps them (multi-line text).
    """
    pattern = _UNSAFE_KEEP_LINES if keep_lines else _UNSAFE
    return pattern.sub(_escape, str(text))
