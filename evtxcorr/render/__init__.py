"""Stage 6: Report -> HTML, Markdown or JSON text, in English or Japanese, times in a chosen zone.

build_context() turns the Report into plain data (context.py); HTML and Markdown are Jinja templates
in templates/ (env.py); JSON is json.dumps of the context's contract keys, not a template.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evtxcorr.errors import EvtxcorrError
from evtxcorr.model import Report
from evtxcorr.render.context import build_context, json_part
from evtxcorr.render.messages import LANGS, event_message
from evtxcorr.render.messages import messages as message_table

__all__ = ["FORMATS", "LANGS", "Format", "build_context", "event_message", "render"]


@dataclass(frozen=True)
class Format:
    """One output format: file suffix, media type, and the function that writes it from a context."""

    suffix: str
    media_type: str
    write: Callable[[Mapping[str, Any]], str]


def _template(name: str, html: bool) -> Callable[[Mapping[str, Any]], str]:
    def write(ctx: Mapping[str, Any]) -> str:
        from evtxcorr.render.env import environment  # jinja2: not needed for a JSON report

        template = environment(html).get_template(name)
        return template.render(**ctx, msg=message_table(str(ctx["lang"])))

    return write


def _json(ctx: Mapping[str, Any]) -> str:
    return json.dumps(json_part(ctx), ensure_ascii=False, indent=2) + "\n"


FORMATS: dict[str, Format] = {
    "html": Format(".html", "text/html; charset=utf-8", _template("report.html.j2", html=True)),
    "md": Format(".md", "text/markdown; charset=utf-8", _template("report.md.j2", html=False)),
    "json": Format(".json", "application/json", _json),
}


def render(report: Report, fmt: str, *, lang: str = "en", tz: str = "UTC") -> str:
    """The report as text in format `fmt` (a FORMATS key), language `lang`, display zone `tz`."""
    if fmt not in FORMATS:
        raise EvtxcorrError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    return FORMATS[fmt].write(build_context(report, lang=lang, tz=tz))
