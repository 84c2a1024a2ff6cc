"""A check of each record's BinXML before the Rust backend reads its chunk: what pyevtx-rs would drop
without a word, expand without bound, or never come back from.

* Invalid UTF-16 (a lone surrogate) in a string value or in the literal text of the record's
  template: pyevtx-rs leaves those code units out of the text; python-evtx (pure.py) shows U+FFFD.
* Expansion: BinXML values (type 0x21) are rendered once per reference, so a value nested inside
  itself ten times, each level referenced ten times, is ten billion elements from a few hundred
  bytes. pyevtx-rs builds them all in memory and cannot be interrupted. The bound used here: a
  template renders at most one node per byte of its definition, plus, per reference to a BinXML
  value (a substitution token naming its index), that value's own bound.
* Loops in the chunk header's string and template chains (for_rust cuts them).

The walk follows only what it must: fragment header, template instance, definition (by chunk
offset), value descriptors, values, and nested BinXML values the same way. A record it cannot walk
(damaged, template-less with instances inside) is left to the parsers, which fail it or read it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from itertools import accumulate

from evtxcorr.parse.chunks import RECORD_HEADER_SIZE, Chunk, RecordSlot

MAX_EXPANSION = 200_000  # nodes one record may render; real records bound to a few thousand
MAX_NESTING = 16  # BinXML values inside BinXML values (Windows writes 1)

BINXML_VALUE = 0x21
BINARY_VALUE = 0x0E
STRING_TABLE, STRING_BUCKETS = 128, 64  # chunk header: heads of the string chains
TEMPLATE_TABLE, TEMPLATE_BUCKETS = 384, 32  # and of the template chains
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_LITERAL = re.compile(rb"[\x05\x45]\x01", re.DOTALL)  # a value token holding a UTF-16 string (candidates)


class _Unwalkable(Exception):
    """Bytes the walk does not follow (damage, or a form Windows does not write)."""


@dataclass
class Finding:
    """Why one record is not taken from the Rust backend."""

    reason: str
    invalid_text: bool  # a lone surrogate: the record is read by python-evtx, which marks it U+FFFD
    binxml_values: list[int] = field(default_factory=list)  # descriptor offsets of its 0x21 values


class _Definition:
    """A template definition: its bytes (one node per byte at most), references counted on demand."""

    __slots__ = ("body", "refs", "bad_text")

    def __init__(self, body: bytes, base: int) -> None:
        self.body = body  # from its fragment header; `base` is where that is in the chunk
        self.refs: dict[int, int] = {}
        self.bad_text = _literal_text_invalid(body, base)

    def references(self, index: int) -> int:
        """Substitution tokens naming `index` (0D or 0E, then the u16): an upper bound, as a byte
        run of that shape elsewhere in the definition only adds to it."""
        found = self.refs.get(index)
        if found is None:
            packed = struct.pack("<H", index)
            found = self.refs[index] = self.body.count(b"\x0d" + packed) + self.body.count(b"\x0e" + packed)
        return found


def _invalid_utf16(raw: bytes) -> bool:
    try:
        raw.decode("utf-16-le")
    except UnicodeDecodeError:
        return True
    return False


_SUSPECT: dict[bytes, bool] = {}  # definition body -> a candidate literal holds invalid UTF-16


def _suspect(body: bytes) -> bool:
    """Candidates are found by their two-byte token start (one search per distinct definition: the
    same templates recur in every chunk of a log)."""
    found = _SUSPECT.get(body)
    if found is None:
        found = False
        for match in _LITERAL.finditer(body):
            at = match.start()
            if at + 4 <= len(body):
                chars = _U16(body, at + 2)[0]
                if at + 4 + 2 * chars <= len(body) and _invalid_utf16(body[at + 4 : at + 4 + 2 * chars]):
                    found = True
                    break
        if len(_SUSPECT) > 4096:
            _SUSPECT.clear()
        _SUSPECT[body] = found
    return found


def _literal_text_invalid(body: bytes, base: int) -> bool:
    """A literal UTF-16 value in the definition holds a lone surrogate. A candidate that is really a
    token is confirmed by walking the tokens."""
    return _suspect(body) and _walk_literals(body, base)


def _walk_literals(body: bytes, base: int) -> bool:
    """Token walk of a definition body: a literal with invalid UTF-16."""
    pos, end = 0, len(body)

    def past_name(at: int) -> int:  # an inline name sits where the name offset just read points
        return at + 10 + 2 * _U16(body, at + 6)[0] if _U32(body, at - 4)[0] == base + at else at

    try:
        while pos < end:
            token = body[pos]
            kind = token & 0xBF  # 0x40: "more follow" / "has attributes"
            if kind == 0x00:
                return False
            if kind == 0x0F:
                pos += 4
            elif kind == 0x01:  # open element: dependency id, data size, name offset, [inline name]
                pos = past_name(pos + 11) + (4 if token & 0x40 else 0)
            elif kind in (0x02, 0x03, 0x04):
                pos += 1
            elif kind == 0x05:
                if body[pos + 1] != 0x01:
                    return False
                chars = _U16(body, pos + 2)[0]
                if _invalid_utf16(body[pos + 4 : pos + 4 + 2 * chars]):
                    return True
                pos += 4 + 2 * chars
            elif kind in (0x06, 0x09, 0x0A):  # attribute, entity reference, PI target: a name
                pos = past_name(pos + 5)
            elif kind in (0x07, 0x0B):  # CDATA, PI data
                pos += 3 + 2 * _U16(body, pos + 1)[0]
            elif kind == 0x08:
                pos += 3
            elif kind in (0x0D, 0x0E):
                pos += 4
            else:
                return False
    except (IndexError, struct.error):
        return False
    return False


def _definition(data: bytes, offset: int, cache: dict[int, _Definition | None]) -> _Definition:
    if offset in cache:
        found = cache[offset]
    else:
        found = None
        if offset + 24 <= len(data):
            end = offset + 24 + _U32(data, offset + 20)[0]
            if end <= len(data):
                found = _Definition(data[offset + 24 : end], offset + 24)
        cache[offset] = found
    if found is None:  # not a definition that fits in the chunk: the parsers will fail the record
        raise _Unwalkable
    return found


_SHAPES: dict[bytes, tuple[tuple[int, ...], tuple[int, ...]]] = {}


def _shape(kinds: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(indexes of string values, of BinXML values) for one sequence of value types; records of one
    template share it, so it is worked out once."""
    found = _SHAPES.get(kinds)
    if found is None:
        if len(_SHAPES) > 4096:
            _SHAPES.clear()
        strings = tuple(i for i, kind in enumerate(kinds) if kind in (0x01, 0x81))
        found = _SHAPES[kinds] = (strings, tuple(i for i, kind in enumerate(kinds) if kind == BINXML_VALUE))
    return found


def _strings_invalid(data: bytes, starts: list[int], indexes: tuple[int, ...]) -> bool:
    """A lone surrogate in one of these string values. One decode for them all, NUL between them (a
    pair split across two values is two lone surrogates); an odd last byte is not a code unit."""
    if not _invalid_utf16(b"\0\0".join([data[starts[i] : starts[i + 1]] for i in indexes])):
        return False
    return any(
        _invalid_utf16(data[starts[i] : starts[i + 1] - ((starts[i + 1] - starts[i]) & 1)]) for i in indexes
    )


class _Walk:
    """What the walk of one record found (a plain class: one is made per record checked)."""

    __slots__ = ("data", "cache", "bad_text", "depth", "top_binxml")

    def __init__(self, data: bytes, cache: dict[int, _Definition | None]) -> None:
        self.data, self.cache = data, cache
        self.bad_text = False
        self.depth = 0
        self.top_binxml: list[int] = []


def _fragment(walk: _Walk, pos: int, end: int, level: int) -> int:
    """Node bound of the BinXML in [pos, end): an optional fragment header, then a template instance."""
    data = walk.data
    if level > walk.depth:
        walk.depth = level
    if level > MAX_NESTING:
        return MAX_EXPANSION + 1
    if pos < end and data[pos] == 0x0F:  # fragment header (nested values written by Windows have none)
        pos += 4
    if pos < end and data[pos] != 0x0C:
        # Template-less BinXML (Windows writes some UserData so): rendered once, as long as it holds
        # no template instance of its own (one it does hold is not followed: the record is unchecked).
        if b"\x0c\x01" in data[pos:end]:
            raise _Unwalkable
        return end - pos
    if pos + 10 > end:
        raise _Unwalkable
    offset = _U32(data, pos + 6)[0]
    pos += 10
    if offset == pos:  # resident: the definition follows
        if pos + 24 > end:
            raise _Unwalkable
        pos += 24 + _U32(data, pos + 20)[0]
    definition = _definition(data, offset, walk.cache)
    if definition.bad_text:
        walk.bad_text = True
    if pos + 4 > end:
        raise _Unwalkable
    values = pos + 4 + 4 * _U32(data, pos)[0]
    if values > end:
        raise _Unwalkable
    kinds = data[pos + 6 : values : 4]  # descriptors: u16 size, u8 type, u8 0
    starts = list(accumulate(memoryview(data)[pos + 4 : values].cast("H")[::2], initial=values))
    if starts[-1] > end:
        raise _Unwalkable
    strings, binxml = _shape(kinds)
    if strings and _strings_invalid(data, starts, strings):
        walk.bad_text = True
    nodes = len(definition.body)
    for index in binxml:
        if starts[index + 1] == starts[index]:
            continue
        if level == 0:
            walk.top_binxml.append(pos + 4 + 4 * index + 2)
        # walked even when not referenced: pyevtx-rs reads every value, nested ones included
        inner = _fragment(walk, starts[index], starts[index + 1], level + 1)
        nodes += definition.references(index) * inner
        if nodes > MAX_EXPANSION:
            return nodes
    return nodes


def check_record(data: bytes, slot: RecordSlot, cache: dict[int, _Definition | None]) -> Finding | None:
    """What makes the record at `slot` unfit for the Rust backend, or None. `cache` is per chunk."""
    if not slot.valid:
        return None
    walk = _Walk(data, cache)
    try:
        nodes = _fragment(walk, slot.offset + RECORD_HEADER_SIZE, slot.offset + slot.size - 4, 0)
    except Exception:  # noqa: BLE001 - _Unwalkable, or damage the walk did not foresee: the parsers decide
        return None
    if walk.depth > MAX_NESTING:
        reason = f"BinXML values nested more than {MAX_NESTING} deep"
    elif nodes > MAX_EXPANSION:
        reason = f"record expands past {MAX_EXPANSION} nodes (BinXML values referenced many times)"
    elif walk.bad_text:
        return Finding("invalid UTF-16 text (the evtx backend drops it)", invalid_text=True)
    else:
        return None
    return Finding(reason, invalid_text=False, binxml_values=walk.top_binxml)


def check_chunk(data: bytes, slots: list[RecordSlot]) -> dict[int, Finding]:
    """Slot offset -> finding, for the records of one chunk that the Rust backend must not read."""
    cache: dict[int, _Definition | None] = {}
    found = {}
    for slot in slots:
        finding = check_record(data, slot, cache)
        if finding is not None:
            found[slot.offset] = finding
    return found


def unfit(chunk: Chunk) -> dict[int, Finding]:
    """check_chunk() of a chunk, computed once."""
    if chunk.unfit is None:
        chunk.unfit = check_chunk(chunk.data, chunk.slots[1:] if chunk.lead_blank else chunk.slots)
    return chunk.unfit


def _cycles(data: bytes, table: int, buckets: int) -> list[int]:
    """Offsets of the `next` fields that close a loop in the chains of one chunk-header table."""
    seen: set[int] = set()
    closing = []
    last = len(data) - 4
    for offset in struct.unpack_from(f"<{buckets}I", data, table):
        while 0 < offset <= last:
            seen.add(offset)
            following = _U32(data, offset)[0]
            if following in seen:
                closing.append(offset)
                break
            offset = following
    return closing


def for_rust(data: bytes, findings: dict[int, Finding]) -> bytes:
    """The chunk as given to pyevtx-rs, patched where it would not come back:

    * a string or template chain that loops (4 changed bytes) is cut where it closes: pyevtx-rs
      follows chains without remembering where it has been, inside one call that holds the GIL (no
      signal or thread can stop it). Names and templates are still read where records point at them.
    * the BinXML values of over-expanding records are retyped as binary (printed as hex, not
      expanded); those records are not taken from it anyway.
    """
    patches = [at for finding in findings.values() for at in finding.binxml_values]
    cuts = []
    if len(data) >= 512:
        cuts = _cycles(data, STRING_TABLE, STRING_BUCKETS) + _cycles(data, TEMPLATE_TABLE, TEMPLATE_BUCKETS)
    if not patches and not cuts:
        return data
    patched = bytearray(data)
    for at in patches:
        patched[at] = BINARY_VALUE
    for at in cuts:
        patched[at : at + 4] = bytes(4)
    return bytes(patched)
