"""Status codes in event payloads: find them (data-driven) and name them (evtxcorr/data/codes.yaml).

Canonical form: '0x' + 8 upper-case hex digits. A win32 error N is 0x0000NNNN; an NTSTATUS or
HRESULT written as a negative decimal is read as 32-bit two's complement.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from evtxcorr.resources import load_yaml

CODES_FILE = Path(__file__).parent / "data" / "codes.yaml"
_HEX_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])0[xX]([0-9A-Fa-f]{8})(?![0-9A-Fa-f])")
_INSERT = re.compile(r"%%(\d{1,10})")
_DECIMAL = re.compile(r"^\s*(-?\d{1,11})\s*$")
_BARE_HEX = re.compile(r"^(?:0[xX])?([0-9A-Fa-f]{1,8})$")


@cache
def _table() -> dict[str, Any]:
    loaded: Any = load_yaml(CODES_FILE)
    positions: dict[tuple[str, int], tuple[int, ...]] = {}
    for item in loaded.get("decimal_codes", []):
        key = (item["provider"], int(item["event_id"]))
        positions[key] = (*positions.get(key, ()), int(item["param"]))
    return {"codes": loaded.get("codes", {}), "positions": positions}


def _hex(number: int) -> str:
    return f"0x{number & 0xFFFFFFFF:08X}"


def canonical(code: str | int) -> str | None:
    """'0xC000005E' for -1073741717-style decimals, '%%1311', 'C000005E', '0xc000005e', 1311...

    A bare decimal is taken as a number (1311 -> win32 0x0000051F); a bare string of hex letters
    and digits that is not a decimal is taken as hex. None when `code` is not a 32-bit code.
    """
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return _hex(code) if -(2**31) <= code < 2**32 else None
    text = code.strip()
    insert = _INSERT.fullmatch(text)
    if insert:
        return canonical(int(insert.group(1)))
    if _DECIMAL.match(text) and not text.lower().startswith("0x"):
        return canonical(int(text))
    match = _BARE_HEX.match(text)
    return _hex(int(match.group(1), 16)) if match else None


def _binary_status(binary: str) -> str | None:
    """A 4-byte Binary (8 hex digits) as a little-endian NTSTATUS."""
    if len(binary) != 8:
        return None
    try:
        return _hex(int.from_bytes(bytes.fromhex(binary), "little"))
    except ValueError:
        return None


def extract_codes(provider: str, event_id: int, data: tuple[str, ...], binary: str) -> tuple[str, ...]:
    """Status codes in one record, canonical, in order of appearance, without repeats."""
    found: list[str] = []
    status = _binary_status(binary) if binary else None
    if status:
        found.append(status)
    for value in data:
        if "%%" in value:
            found.extend(_hex(int(n)) for n in _INSERT.findall(value) if int(n) < 2**32)
        if "0x" in value or "0X" in value:
            found.extend(_hex(int(h, 16)) for h in _HEX_IN_TEXT.findall(value))
    for param in _table()["positions"].get((provider, event_id), ()):
        if param <= len(data) and _DECIMAL.match(data[param - 1]):
            code = canonical(int(data[param - 1]))
            if code:
                found.append(code)
    return tuple(dict.fromkeys(found))


def describe(code: str, lang: str = "en") -> tuple[str, str] | None:
    """(symbolic name, message text in `lang`, English when missing) for a code, or None if unknown.

    An HRESULT wrapping a win32 error (0x8007NNNN) is described by that error.
    """
    key = canonical(code)
    if key is None:
        return None
    codes = _table()["codes"]
    entry = codes.get(key)
    if entry is None and key.startswith("0x8007"):
        entry = codes.get(f"0x0000{key[6:]}")
    if entry is None:
        return None
    return entry["name"], entry.get(lang) or entry["en"]
