"""The Jinja environments (the only module that imports Jinja): one for HTML, one for Markdown.

Both load templates/ from the filesystem, use StrictUndefined (a missing key is an error, never an
empty cell) and pass every printed value through a `finalize` that makes invisible control and bidi
characters visible ('[U+202E]'), so event data cannot reorder or hide text on screen.
HTML autoescapes. Markdown has no autoescape in Jinja, so its finalize escapes every value unless it
is marked `MdSafe` (only the `fence` filter does that, for code blocks).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from evtxcorr.render import timeline
from evtxcorr.resources import data_dir

_KEEP = {"\n", "\t"}
_MD_SPECIALS = re.compile(r"([\\`*_\[\]|~])")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SAFE_URL = re.compile(r"^https?://[^\s\"'<>]+$", re.IGNORECASE)


class MdSafe(str):
    """Markdown text that is already safe to print as is (built by the `fence` filter)."""


def visible(text: str) -> str:
    """Replace control and format characters (bidi overrides, zero-width, NUL...) by '[U+XXXX]'."""
    if text.isprintable() and "\u00ad" not in text:
        return text
    return "".join(
        ch
        if ch in _KEEP or unicodedata.category(ch) not in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp")
        else f"[U+{ord(ch):04X}]"
        for ch in text
    )


def md_escape(text: str) -> str:
    """Inline-safe Markdown: one line, entities for & < >, backslash before markup characters."""
    one_line = " ".join(visible(text).replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    one_line = "".join(_MD_ENTITIES.get(ch, ch) for ch in one_line)
    return _MD_SPECIALS.sub(r"\\\1", one_line)


def _html_finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return Markup(visible(str(value)))
    if isinstance(value, str):
        return visible(value)
    return value


def _md_finalize(value: Any) -> str:
    if isinstance(value, MdSafe):
        return str(value)
    return md_escape("" if value is None else str(value))


def fmt(template: str, **values: Any) -> str:
    """Fill a message's {name} fields. HTML: Markup.format escapes the values."""
    return template.format(**values)


def fmt_html(template: str, **values: Any) -> Markup:
    return Markup(template).format(**{k: visible(str(v)) for k, v in values.items()})


def fence(text: str, info: str = "") -> MdSafe:
    """A fenced code block longer than any backtick run in `text` (so the text cannot close it)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    marker = "`" * max(3, longest + 1)
    return MdSafe(f"{marker}{info}\n{visible(text)}\n{marker}")


def md_cell(text: str, limit: int = 0) -> str:
    """One table-cell text, cut to `limit` characters with an ellipsis (0: no limit)."""
    flat = " ".join(str(text).split())
    return flat if not limit or len(flat) <= limit else flat[: limit - 1] + "\u2026"


def pct(value: float | None) -> int | str:
    return "?" if value is None else round(float(value) * 100)


def signed(value: float) -> str:
    return f"{float(value):+.2f}"


def signed1(value: float) -> str:
    """A clock offset: '+370.4' / '-14.5' (a minus sign, U+2212, reads better but breaks copy-paste)."""
    return f"{float(value):+.1f}"


def lines(text: str) -> list[str]:
    return [line for line in str(text).splitlines() if line.strip()]


def safe_url(url: str) -> bool:
    """Only http(s) references become links; anything else (javascript:, data:...) stays text."""
    return bool(_SAFE_URL.match(str(url)))


FILTERS: Mapping[str, Callable[..., Any]] = {
    "local": timeline.local_text,
    "pct": pct,
    "signed": signed,
    "signed1": signed1,
    "lines": lines,
    "cell": md_cell,
}


def _environment(*, html: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(data_dir("templates"))),
        autoescape=html,
        undefined=StrictUndefined,
        finalize=_html_finalize if html else _md_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.filters["fmt"] = fmt_html if html else fmt
    env.filters["fence"] = fence
    env.tests["safe_url"] = safe_url
    return env


@lru_cache(maxsize=2)
def environment(html: bool) -> Environment:
    """The shared HTML (html=True) or Markdown environment."""
    return _environment(html=html)
