"""BinXML as Windows writes it: template trees, their chunk-local encoding, and typed values.

A template is a tree of `Element`, `Text` and `Sub` nodes. Its identity is its structure, so equal trees
share one interned `Template` (one GUID, uuid5 of a canonical spelling of the tree). Encoding a template
depends on where in the chunk it lands (names and template definitions are addressed by chunk offset), so
`ChunkTables` holds the per-chunk state: names already written (Windows writes each name inline once per
chunk, chained into the 64-bucket string table, and refers to its offset after) and template definitions
already written (chained into the 32-bucket template table). Each template is compiled once into a flat
list of ops so that re-defining it in every chunk is a short loop.

Layout facts: evtx-format.md. The classic System template this produces is byte-identical to Windows'
(tests/test_forge_writer.py::test_first_record_is_byte_identical_to_windows).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from evtxcorr.forge.events import Value, ValueType
from evtxcorr.forge.structs import STRING_BUCKETS, TEMPLATE_BUCKETS, filetime

# Tokens (libyal EVTX documentation, "Binary XML").
TOK_EOF = 0x00
TOK_OPEN = 0x01
TOK_OPEN_ATTRS = 0x41
TOK_CLOSE_START = 0x02
TOK_CLOSE_EMPTY = 0x03
TOK_END = 0x04
TOK_VALUE = 0x05
TOK_ATTR = 0x06
TOK_ATTR_MORE = 0x46
TOK_TEMPLATE_INSTANCE = 0x0C
TOK_NORMAL_SUB = 0x0D
TOK_OPTIONAL_SUB = 0x0E
FRAGMENT_HEADER = b"\x0f\x01\x01\x00"
NO_DEPENDENCY = 0xFFFF

_TEMPLATE_NAMESPACE = uuid.UUID("5b0a6f1e-2f3c-4c55-9a57-6576747863f1")


@dataclass(frozen=True, slots=True)
class Text:
    """Literal character data (element content or an attribute value)."""

    text: str


@dataclass(frozen=True, slots=True)
class Sub:
    """A substitution slot: value `index` of the instance, declared `type`; optional subs vanish when NULL."""

    index: int
    type: int
    optional: bool = True


@dataclass(frozen=True, slots=True)
class Element:
    """An element; no children means an empty element (`<x/>`)."""

    name: str
    attrs: tuple[tuple[str, Text | Sub], ...] = ()
    children: tuple[Element | Text | Sub, ...] = ()


def name_hash(name: str) -> int:
    """Windows' name hash: h = h*65599 + code unit, over UTF-16 code units, low 16 bits."""
    value = 0
    encoded = name.encode("utf-16-le")
    for (unit,) in struct.iter_unpack("<H", encoded):
        value = (value * 65599 + unit) & 0xFFFFFFFF
    return value & 0xFFFF


class Template:
    """An interned template: one object per distinct structure, hashed by identity (trees hash slowly)."""

    __slots__ = ("tree", "guid", "id", "ops")

    def __init__(self, tree: Element) -> None:
        self.tree = tree
        # deterministic whatever built the tree (enum or int types): uuid5 of a canonical spelling
        self.guid = uuid.uuid5(_TEMPLATE_NAMESPACE, _canonical(tree)).bytes_le  # on-disk byte order
        self.id = int.from_bytes(self.guid[:4], "little")  # the instance's template id
        self.ops = _compile(tree)

    def __repr__(self) -> str:
        return f"Template({self.tree.name}, id={self.id:#010x})"


def _canonical(node: Element | Text | Sub) -> str:
    if isinstance(node, Text):
        return repr(node.text)
    if isinstance(node, Sub):
        return f"%{int(node.index)}:{int(node.type)}:{'o' if node.optional else 'n'}"
    attrs = ",".join(f"{name!r}={_canonical(value)}" for name, value in node.attrs)
    children = ",".join(_canonical(child) for child in node.children)
    return f"<{node.name!r}[{attrs}]({children})>"


_INTERNED: dict[Element, Template] = {}


def template(tree: Element) -> Template:
    """The one Template for this structure."""
    found = _INTERNED.get(tree)
    if found is None:
        found = _INTERNED[tree] = Template(tree)
    return found


class ChunkTables:
    """Per-chunk name and template tables (what the chunk header's two offset tables point at)."""

    __slots__ = ("names", "string_heads", "templates", "template_heads")

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.string_heads = [0] * STRING_BUCKETS
        self.templates: dict[Template, int] = {}
        self.template_heads = [0] * TEMPLATE_BUCKETS

    def snapshot(self) -> tuple:
        return (dict(self.names), list(self.string_heads), dict(self.templates), list(self.template_heads))

    def restore(self, state: tuple) -> None:
        self.names, self.string_heads, self.templates, self.template_heads = (
            dict(state[0]),
            list(state[1]),
            dict(state[2]),
            list(state[3]),
        )


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


# A template compiles once into a flat list of ops; only names depend on the chunk (inline the first
# time, an offset after), so emitting it is a loop over the ops with sizes patched at the end of spans.
_BYTES, _NAME, _MARK, _PATCH = range(4)
Op = tuple[int, object]


def _compile(tree: Element) -> tuple[Op, ...]:
    ops: list[Op] = []

    def put(data: bytes) -> None:
        if ops and ops[-1][0] == _BYTES:
            ops[-1] = (_BYTES, ops[-1][1] + data)  # type: ignore[operator]
        else:
            ops.append((_BYTES, data))

    def content(node: Element | Text | Sub) -> None:
        if isinstance(node, Element):
            element(node)
        elif isinstance(node, Text):
            encoded = _utf16(node.text)
            put(struct.pack("<BBH", TOK_VALUE, 0x01, len(encoded) // 2) + encoded)
        else:
            token = TOK_OPTIONAL_SUB if node.optional else TOK_NORMAL_SUB
            put(struct.pack("<BHB", token, node.index, node.type))

    def element(node: Element) -> None:
        # Windows sets the dependency to the optional substitution the content hangs on, else -1.
        dependency = next(
            (c.index for c in node.children if isinstance(c, Sub) and c.optional), NO_DEPENDENCY
        )
        put(struct.pack("<BH", TOK_OPEN_ATTRS if node.attrs else TOK_OPEN, dependency))
        ops.append((_MARK, None))  # data size: everything after this field (= element bytes - 7)
        ops.append((_NAME, node.name))
        if node.attrs:
            ops.append((_MARK, None))  # attribute list size
            for position, (attr_name, attr_value) in enumerate(node.attrs):
                put(bytes([TOK_ATTR_MORE if position < len(node.attrs) - 1 else TOK_ATTR]))
                ops.append((_NAME, attr_name))
                content(attr_value)
            ops.append((_PATCH, None))
        if node.children:
            put(bytes([TOK_CLOSE_START]))
            for child in node.children:
                content(child)
            put(bytes([TOK_END]))
        else:
            put(bytes([TOK_CLOSE_EMPTY]))
        ops.append((_PATCH, None))

    element(tree)
    return tuple(ops)


_U32 = struct.Struct("<I")
_NAME_HEAD = struct.Struct("<IIHH")  # offset, next string in bucket, hash, characters


def _emit(ops: tuple[Op, ...], out: bytearray, base: int, tables: ChunkTables) -> None:
    """Write compiled ops at chunk offset base + len(out), inlining names new to this chunk."""
    names, heads = tables.names, tables.string_heads
    marks: list[int] = []
    for kind, arg in ops:
        if kind == _BYTES:
            out += arg  # type: ignore[operator]
        elif kind == _NAME:
            known = names.get(arg)  # type: ignore[arg-type]
            if known is not None:
                out += _U32.pack(known)
                continue
            offset = base + len(out) + 4
            digest, encoded = _name_parts(arg)  # type: ignore[arg-type]
            bucket = digest % STRING_BUCKETS
            out += _NAME_HEAD.pack(offset, heads[bucket], digest, len(encoded) // 2 - 1)  # no NUL
            out += encoded
            heads[bucket] = offset
            names[arg] = offset  # type: ignore[index]
        elif kind == _MARK:
            marks.append(len(out))
            out += b"\0\0\0\0"
        else:
            at = marks.pop()
            _U32.pack_into(out, at, len(out) - at - 4)


@lru_cache(maxsize=4096)
def _name_parts(name: str) -> tuple[int, bytes]:
    return name_hash(name), _utf16(name) + b"\0\0"


def template_instance(tmpl: Template, position: int, tables: ChunkTables) -> bytes:
    """Template instance token at chunk offset `position`, with the definition inline on first use."""
    defined_at = tables.templates.get(tmpl)
    if defined_at is not None:
        return _INSTANCE(TOK_TEMPLATE_INSTANCE, 0x01, tmpl.id, defined_at)
    defined_at = position + 10
    out = bytearray(_INSTANCE(TOK_TEMPLATE_INSTANCE, 0x01, tmpl.id, defined_at))
    bucket = tmpl.id % TEMPLATE_BUCKETS
    out += _U32.pack(tables.template_heads[bucket]) + tmpl.guid + b"\0\0\0\0"
    size_at = len(out) - 4
    out += FRAGMENT_HEADER
    _emit(tmpl.ops, out, position, tables)
    out.append(TOK_EOF)
    _U32.pack_into(out, size_at, len(out) - size_at - 4)
    tables.templates[tmpl] = defined_at
    tables.template_heads[bucket] = defined_at
    return bytes(out)


_INSTANCE = struct.Struct("<BBII").pack


# ---- values -----------------------------------------------------------------------------------

Encoded = tuple[int, bytes]  # (value type, bytes); NULL is (0, b"")
NULL: Encoded = (0, b"")


def sid_bytes(sid: str) -> bytes:
    """Binary SID from its string form, e.g. 'S-1-5-18'."""
    parts = sid.strip().upper().split("-")
    if len(parts) < 3 or parts[0] != "S":
        raise ValueError(f"not a SID: {sid!r}")
    revision, authority = int(parts[1]), int(parts[2])
    subs = [int(p) for p in parts[3:]]
    return (
        struct.pack("<BB", revision, len(subs))
        + authority.to_bytes(6, "big")
        + struct.pack(f"<{len(subs)}I", *subs)
    )


def guid_bytes(guid: str) -> bytes:
    return uuid.UUID(guid.strip("{}")).bytes_le


def systemtime_bytes(moment: datetime) -> bytes:
    moment = moment.astimezone(UTC)
    return struct.pack(
        "<8H",
        moment.year,
        moment.month,
        moment.isoweekday() % 7,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
    )


def string_array_bytes(strings: tuple[str, ...] | list[str]) -> bytes:
    return b"".join(_utf16(text) + b"\0\0" for text in strings)


_guid_cached = lru_cache(maxsize=4096)(guid_bytes)
_sid_cached = lru_cache(maxsize=4096)(sid_bytes)

_FIXED: dict[int, struct.Struct] = {
    ValueType.INT8: struct.Struct("<b"),
    ValueType.UINT8: struct.Struct("<B"),
    ValueType.INT16: struct.Struct("<h"),
    ValueType.UINT16: struct.Struct("<H"),
    ValueType.INT32: struct.Struct("<i"),
    ValueType.UINT32: struct.Struct("<I"),
    ValueType.INT64: struct.Struct("<q"),
    ValueType.UINT64: struct.Struct("<Q"),
    ValueType.REAL32: struct.Struct("<f"),
    ValueType.REAL64: struct.Struct("<d"),
    ValueType.BOOL: struct.Struct("<I"),
    ValueType.SIZE_T: struct.Struct("<Q"),
    ValueType.HEXINT32: struct.Struct("<I"),
    ValueType.HEXINT64: struct.Struct("<Q"),
}

_CONVERTERS: dict[int, Callable[[object], bytes]] = {
    ValueType.STRING: lambda v: _utf16(str(v)),
    ValueType.ANSI_STRING: lambda v: str(v).encode("cp1252"),
    ValueType.BINARY: bytes,  # type: ignore[dict-item]
    ValueType.GUID: lambda v: _guid_cached(str(v)),
    ValueType.FILETIME: lambda v: struct.pack("<Q", filetime(v)),  # type: ignore[arg-type]
    ValueType.SYSTEMTIME: systemtime_bytes,  # type: ignore[dict-item]
    ValueType.SID: lambda v: _sid_cached(str(v)),
    ValueType.STRING_ARRAY: string_array_bytes,  # type: ignore[dict-item]
}


def encode_value(value: Value) -> Encoded:
    """A payload value as (type, bytes); a None value of any type is NULL."""
    if value.value is None or value.type == ValueType.NULL:
        return NULL
    fixed = _FIXED.get(value.type)
    if fixed is not None:
        return int(value.type), fixed.pack(value.value)
    converter = _CONVERTERS.get(value.type)
    if converter is None:
        raise ValueError(f"value type {value.type!r} cannot be written as a payload value")
    return int(value.type), converter(value.value)


_COUNT = struct.Struct("<I").pack
_DESCRIPTOR = struct.Struct("<HBx").pack


def descriptors(values: list[Encoded]) -> bytes:
    """The value descriptors: (u16 size, u8 type, 0) each."""
    try:
        return b"".join([_DESCRIPTOR(len(data), value_type) for value_type, data in values])
    except struct.error:
        sizes = [len(data) for _, data in values]
        raise ValueError(f"a value is {max(sizes)} bytes; BinXML allows 65535") from None


def descriptor(size: int, value_type: int) -> bytes:
    if size > 0xFFFF:
        raise ValueError(f"a value is {size} bytes; BinXML allows 65535")
    return _DESCRIPTOR(size, value_type)


def instance_values(values: list[Encoded]) -> bytes:
    """Value count, descriptors, then the value bytes."""
    return _COUNT(len(values)) + descriptors(values) + b"".join([data for _, data in values])
