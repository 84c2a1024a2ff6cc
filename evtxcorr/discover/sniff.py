"""What a file is, from its first bytes: the SIGNATURES table, read top to bottom, first match wins;
then, for text, whether it is an event-log export (EXPORT_KINDS), by its content, never its name:
an XML whose root is <Events> (Event Viewer) or an <Event> stream (wevtutil), a CSV whose header row
is a known export header (evtxcorr.formats) in UTF-8, UTF-16 or cp932, a JSON array or object whose
first key is one of PowerShell's EventLogRecord properties."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from evtxcorr.formats import POWERSHELL_COLUMNS, first_line, split_header

HEAD_SIZE = 4096 + 8  # enough to see a chunk signature behind a damaged file header

# (kind, offset, magic). 'evtx' also when only the first chunk's signature is intact.
SIGNATURES: tuple[tuple[str, int, bytes], ...] = (
    ("evtx", 0, b"ElfFile\x00"),
    ("evtx", 4096, b"ElfChnk\x00"),
    ("zip", 0, b"PK\x03\x04"),
    ("zip", 0, b"PK\x05\x06"),  # empty archive
    ("zip", 0, b"PK\x07\x08"),  # spanned archive marker before the first local header
    ("7z", 0, b"7z\xbc\xaf\x27\x1c"),
    ("cab", 0, b"MSCF\x00\x00\x00\x00"),  # Microsoft Cabinet (diagnostic packages)
    ("gzip", 0, b"\x1f\x8b"),  # .gz, .tar.gz, .tgz
    ("bzip2", 4, b"\x31\x41\x59\x26\x53\x59"),  # 'BZh9' then the block magic
    ("xz", 0, b"\xfd7zXZ\x00"),
    ("tar", 257, b"ustar"),
    ("rar", 0, b"Rar!\x1a\x07"),
)
EXPORT_KINDS = ("xml", "csv", "json")  # event-log exports, read by parse/exports/

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# declaration, comments and a DOCTYPE (the reader refuses that one, saying why)
_XML_PROLOG = re.compile(
    r"^\s*(?:<\?xml[^>]*\?>\s*)?(?:(?:<!--.*?-->|<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>)\s*)*", re.DOTALL
)
_EVENT_ROOT = re.compile(r"<Events?[\s>/]")
_FIRST_KEY = re.compile(r'^\s*\[?\s*\{\s*"([A-Za-z]+)"\s*:')
_JSON_KEYS = frozenset(POWERSHELL_COLUMNS)


def sniff_bytes(head: bytes) -> str:
    """'evtx', an archive kind ('zip', '7z', 'cab', 'gzip', 'bzip2', 'xz', 'tar', 'rar'), an export
    kind ('xml', 'csv', 'json'), 'xml-other' (XML that is no event export), 'text', 'empty' or
    'unknown' for the first bytes of a file."""
    if not head:
        return "empty"
    for kind, offset, magic in SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return kind
    text = _text(head)
    return "unknown" if text is None else _text_kind(text)


def _text(head: bytes) -> str | None:
    """The head decoded (a BOM says how; else UTF-8, else the Japanese ANSI code page), or None
    when it is not text."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            body = head[len(bom) :]
            if "16" in codec:
                body = body[: len(body) // 2 * 2]
            return body.decode(codec, "replace")
    if len(head) >= 8 and head[1:8:2] == b"\0\0\0\0" and b"\0" not in head[0:8:2]:  # UTF-16 LE, no BOM
        return head[: len(head) // 2 * 2].decode("utf-16-le", "replace")
    if _looks_like_text(head):
        return head.decode("utf-8", "replace")
    if b"\x00" not in head[:4096]:
        try:
            return head.decode("cp932")
        except UnicodeDecodeError:
            return None
    return None


def _text_kind(text: str) -> str:
    stripped = text.lstrip()
    if stripped.startswith("<"):
        after = text[_XML_PROLOG.match(text).end() :]  # type: ignore[union-attr]
        return "xml" if _EVENT_ROOT.match(after) else "xml-other"
    first_key = _FIRST_KEY.match(text)
    if first_key and first_key.group(1) in _JSON_KEYS:
        return "json"
    if split_header(first_line(text)):
        return "csv"
    return "text"


def _looks_like_text(head: bytes) -> bool:
    sample = head[:4096]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(sample) - 4  # a multi-byte character cut by the sample end
    return True


def sniff(path: Path) -> str:
    """Kind of the file at `path` (raises OSError when it cannot be read)."""
    with path.open("rb") as fh:
        return sniff_bytes(fh.read(HEAD_SIZE))
