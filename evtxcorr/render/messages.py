"""Words the reports use: message sentences by key, and Event Viewer-like texts for events.

Both are data in templates/ (messages/<lang>.yaml, events/<lang>.yaml); this module only loads and
fills them. Event texts are for reading: no diagnosis depends on them.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Mapping, Sequence
from functools import cache, lru_cache
from typing import Any

from evtxcorr.errors import EvtxcorrError
from evtxcorr.resources import data_dir, load_yaml

LANGS: tuple[str, ...] = ("en", "ja")

# Windows FormatMessage escapes: %1..%99 (optionally %1!s!), %n newline, %t tab, %r CR, %% percent.
_INSERT = re.compile(r"%(\d{1,2})(?:![^!]*!)?|%([ntr%.!])")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "%": "%", ".": ".", "!": "!"}
_PARAMETER = re.compile(r"^%%(\d+)$")  # a parameter-message insert such as '%%1311'


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise EvtxcorrError(f"unknown report language {lang!r} (known: {', '.join(LANGS)})")
    return lang


def _load_yaml(*parts: str) -> object:
    return load_yaml(data_dir("templates").joinpath(*parts))


@cache
def messages(lang: str) -> Mapping[str, str]:
    """Every user-facing sentence of the reports in `lang`, by key."""
    table = _load_yaml("messages", f"{check_lang(lang)}.yaml")
    if not isinstance(table, dict):
        raise EvtxcorrError(f"templates/messages/{lang}.yaml is not a mapping")
    return {str(key): str(text) for key, text in table.items()}


@cache
def event_templates(lang: str) -> Mapping[tuple[str, int], Mapping[int, str]]:
    """(provider in lower case, event id) -> {number of inserts: message template}.

    A YAML entry is a string, or a mapping from insert count to variant (Windows keeps several
    message versions under one id; the record's number of values picks one).
    """
    table = _load_yaml("events", f"{check_lang(lang)}.yaml")
    out: dict[tuple[str, int], Mapping[int, str]] = {}
    for provider, by_id in (table or {}).items():
        for event_id, text in by_id.items():
            variants = text if isinstance(text, dict) else {0: text}
            out[(str(provider).casefold(), int(event_id))] = {int(k): str(v) for k, v in variants.items()}
    return out


@cache
def _code_table() -> Any:
    """evtxcorr.codes, or None: the renderer works without it (codes then show as raw hex)."""
    if importlib.util.find_spec("evtxcorr.codes") is None:
        return None
    return importlib.import_module("evtxcorr.codes")


@lru_cache(maxsize=4096)
def describe_code(code: str, lang: str) -> tuple[str, str] | None:
    """(symbolic name, text) of a status code from evtxcorr.codes, or None when unknown."""
    codes = _code_table()
    found = codes.describe(code, lang) if codes is not None else None
    return (str(found[0]), str(found[1])) if found else None


def parameter_text(value: str, lang: str) -> str:
    """Resolve a '%%1311' insert to the Win32 message text when the code table knows it."""
    match = _PARAMETER.match(value.strip())
    if not match:
        return value
    number = int(match.group(1))
    for candidate in (f"0x{number:08X}", f"0x{0x80070000 | (number & 0xFFFF):08X}", str(number)):
        found = describe_code(candidate, lang)
        if found:
            return found[1]
    return value


def _variant(variants: Mapping[int, str], count: int) -> str:
    fitting = [n for n in variants if n <= count]
    return variants[max(fitting)] if fitting else variants[min(variants)]


def format_message(template: str, data: Sequence[str], lang: str) -> str:
    """Fill %1..%n from `data` (1-based); a missing insert stays as written, as Event Viewer does."""

    def fill(match: re.Match[str]) -> str:
        if match.group(2):
            return _ESCAPES[match.group(2)]
        index = int(match.group(1)) - 1
        if 0 <= index < len(data):
            return parameter_text(str(data[index]), lang)
        return match.group(0)

    return _INSERT.sub(fill, template)


def event_message(provider: str, event_id: int, data: Sequence[str], lang: str = "en") -> str | None:
    """Event Viewer-like text of an event, or None when no template ships for provider + id."""
    variants = event_templates(lang).get((provider.casefold(), int(event_id)))
    if variants is None:
        return None
    return format_message(_variant(variants, len(data)), data, lang).strip()
