"""The event catalogue (catalog.yaml) compiled into Kinds, and ForgedEvents made from a Kind plus params.

A Kind knows everything about one event type except the moment, the host and the varying values; those
come as a params dict whose keys fill the "{name}" placeholders of the kind's templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from evtxcorr.forge.events import Classic, EventData, ForgedEvent, Payload, UserData, Value, ValueType
from evtxcorr.forge.yamlcheck import KeyPath, ScenarioError, check, load_yaml, raise_problems

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")

TYPES: dict[str, ValueType] = {
    "str": ValueType.STRING,
    "u8": ValueType.UINT8,
    "u16": ValueType.UINT16,
    "u32": ValueType.UINT32,
    "u64": ValueType.UINT64,
    "i32": ValueType.INT32,
    "i64": ValueType.INT64,
    "hex32": ValueType.HEXINT32,
    "hex64": ValueType.HEXINT64,
    "bool": ValueType.BOOL,
    "guid": ValueType.GUID,
    "sid": ValueType.SID,
    "filetime": ValueType.FILETIME,
    "binary": ValueType.BINARY,
}
TAGS = ("CONFIRMED", "SEEN", "INFERRED", "UNKNOWN")
CORRELATIONS = ("none", "random", "episode")

_FIELDS = ["list", "any"]  # [name, type, template] triples, checked in _compile_fields
_KIND_SCHEMA = {
    "extends": ("str", False),
    "provider": ("str", False),
    "channel": ("str", False),
    "id": ("int", False),
    "level": ("int", False),
    "version": ("int", False),
    "task": ("int", False),
    "opcode": ("int", False),
    "qualifiers": ("int", False),
    "keywords": ("int", False),
    "user": ("str", False),
    "process": ("str", False),
    "correlation": ("str", False),
    "classic": ({"strings": (["list", "str"], True), "binary": ("any", False)}, False),
    "eventdata": ({"name": ("str", False), "fields": (_FIELDS, True), "binary": ("any", False)}, False),
    "userdata": ({"root": ("str", True), "xmlns": ("str", True), "fields": (_FIELDS, True)}, False),
    "defaults": ("map:any", False),
    "message": ("str", False),
    "tag": ("str", False),
    "note": ("str", False),
}
_PROVIDER_SCHEMA = {
    "guid": ("str", False),
    "event_source_name": ("str", False),
    "channel": ("str", True),
    "keywords": ("int", False),
    "user": ("str", False),
    "process": ("str", True),
    "tag": ("str", True),
}
CATALOG_SCHEMA = {
    "processes": ("map:any", True),
    "providers": ("map:any", True),
    "anchors": ("map:any", False),
    "inserts": ("map:str", False),
    "kinds": ("map:any", True),
}

_EXACT = re.compile(r"^\{(\w+)\}$")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: ValueType
    template: str


@dataclass(frozen=True)
class Kind:
    """One event type: its fixed System values and its payload templates."""

    name: str
    provider: str
    channel: str
    event_id: int
    level: int = 4
    guid: str | None = None
    event_source_name: str | None = None
    qualifiers: int | None = None
    version: int = 0
    task: int = 0
    opcode: int = 0
    keywords: int = 0x8000000000000000
    user: str | None = None
    process: str = "none"
    correlation: str = "none"
    shape: str = "classic"  # classic | eventdata | userdata
    strings: tuple[str, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    binary: tuple[str, tuple[str, ...]] | None = None  # ("hex", (tmpl,)) or ("utf16", (tmpl, ...))
    template_name: str | None = None
    root: str = ""
    xmlns: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    tag: str = "UNKNOWN"
    note: str = ""


@dataclass(frozen=True)
class Catalog:
    path: str
    kinds: dict[str, Kind]
    processes: dict[str, tuple[int, int]]
    inserts: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    """Load and check catalog.yaml; every problem is reported with file, line and key path."""
    doc, problems = load_yaml(path)
    problems += check(doc.data, CATALOG_SCHEMA)
    raise_problems(doc, problems)
    data = doc.data
    for name, spec in data["providers"].items():
        problems += check(spec, _PROVIDER_SCHEMA, ("providers", name))
    processes = {}
    for name, span in data["processes"].items():
        ok = isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span)
        if not ok:
            problems.append((("processes", name), "must be [lowest, highest] pid"))
        else:
            processes[name] = (span[0], span[1])
    kinds = {}
    for name, spec in data["kinds"].items():
        kind_problems = check(spec, _KIND_SCHEMA, ("kinds", name))
        problems += kind_problems
        if not kind_problems:
            kind, more = _compile_kind(name, data, processes)
            problems += more
            if kind:
                kinds[name] = kind
    raise_problems(doc, problems)
    return Catalog(str(path), kinds, processes, dict(data.get("inserts", {})))


def _resolved(name: str, kinds: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The kind's mapping with its `extends` chain merged in (the child's keys win)."""
    spec = kinds[name]
    parent = spec.get("extends")
    if not parent:
        return dict(spec)
    if parent not in kinds or parent in seen:
        raise KeyError(parent)
    merged = _resolved(parent, kinds, (*seen, name))
    merged.update({k: v for k, v in spec.items() if k != "extends"})
    return merged


def _compile_kind(name: str, data: dict, processes: dict) -> tuple[Kind | None, list[tuple[KeyPath, str]]]:
    at: KeyPath = ("kinds", name)
    try:
        spec = _resolved(name, data["kinds"])
    except KeyError as exc:
        return None, [((*at, "extends"), f"unknown or circular parent kind '{exc.args[0]}'")]
    problems: list[tuple[KeyPath, str]] = []
    provider = data["providers"].get(spec.get("provider"))
    if provider is None:
        return None, [((*at, "provider"), f"unknown provider '{spec.get('provider')}'")]
    shapes = [s for s in ("classic", "eventdata", "userdata") if s in spec]
    if len(shapes) != 1:
        return None, [(at, "needs exactly one payload: classic, eventdata or userdata")]
    if "id" not in spec:
        problems.append((at, "missing required key 'id'"))
    shape = shapes[0]
    payload = spec[shape]
    fields, more = _compile_fields(payload.get("fields", []), (*at, shape, "fields"))
    problems += more
    process = spec.get("process", provider["process"])
    if process not in processes:
        problems.append(((*at, "process"), f"unknown process '{process}'"))
    tag = spec.get("tag", provider["tag"])
    if tag not in TAGS:
        problems.append(((*at, "tag"), f"must be one of {', '.join(TAGS)}"))
    correlation = spec.get("correlation", "none")
    if correlation not in CORRELATIONS:
        problems.append(((*at, "correlation"), f"must be one of {', '.join(CORRELATIONS)}"))
    binary = _binary_spec(payload.get("binary")) if shape != "userdata" else None
    if payload.get("binary") is not None and binary is None:
        problems.append(((*at, shape, "binary"), "must be a hex text or {utf16: [texts]}"))
    if problems:
        return None, problems
    kind = Kind(
        name=name,
        provider=spec["provider"],
        channel=spec.get("channel", provider["channel"]),
        event_id=spec["id"],
        level=spec.get("level", 4),
        guid=provider.get("guid"),
        event_source_name=provider.get("event_source_name"),
        qualifiers=spec.get("qualifiers"),
        version=spec.get("version", 0),
        task=spec.get("task", 0),
        opcode=spec.get("opcode", 0),
        keywords=spec.get("keywords", provider.get("keywords", 0x8000000000000000)),
        user=spec.get("user", provider.get("user")),
        process=process,
        correlation=correlation,
        shape=shape,
        strings=tuple(payload.get("strings", ())),
        fields=fields,
        binary=binary,
        template_name=payload.get("name"),
        root=payload.get("root", ""),
        xmlns=payload.get("xmlns", ""),
        defaults=dict(spec.get("defaults", {})),
        message=spec.get("message", ""),
        tag=tag,
        note=spec.get("note", ""),
    )
    return kind, []


def _compile_fields(raw: list, at: KeyPath) -> tuple[tuple[FieldSpec, ...], list[tuple[KeyPath, str]]]:
    out, problems = [], []
    for i, item in enumerate(raw):
        ok = isinstance(item, list) and len(item) == 3 and all(isinstance(v, str) for v in item)
        if not ok or item[1] not in TYPES:
            problems.append(((*at, i), f"must be [name, type, template] with type one of {', '.join(TYPES)}"))
            continue
        out.append(FieldSpec(item[0], TYPES[item[1]], item[2]))
    return tuple(out), problems


def _binary_spec(raw: Any) -> tuple[str, tuple[str, ...]] | None:
    if isinstance(raw, str):
        return ("hex", (raw,))
    if isinstance(raw, dict) and set(raw) == {"utf16"} and isinstance(raw["utf16"], list):
        return ("utf16", tuple(str(v) for v in raw["utf16"]))
    return None


# --- making events --------------------------------------------------------------------------------


def fill(template: str, params: dict[str, Any], kind: str = "") -> Any:
    """The template with params filled in; a template that is exactly '{name}' returns the raw value."""
    exact = _EXACT.match(template)
    try:
        if exact:
            return params[exact.group(1)]
        return template.format_map(params)
    except KeyError as exc:
        raise ScenarioError(f"event kind '{kind}': no value for placeholder '{{{exc.args[0]}}}'") from exc


def typed(value: Any, value_type: ValueType) -> Value:
    """A payload Value of `value_type` from a param value (text, number, bytes or datetime)."""
    if value_type in (ValueType.STRING, ValueType.GUID, ValueType.SID):
        return Value(value_type, str(value))
    if value_type == ValueType.BINARY:
        return Value(value_type, value if isinstance(value, bytes) else bytes.fromhex(str(value)))
    if value_type == ValueType.FILETIME:
        if not isinstance(value, datetime):
            raise ScenarioError(f"a filetime field needs a datetime, got {value!r}")
        return Value(value_type, value)
    if value_type == ValueType.BOOL:
        return Value(value_type, bool(value))
    return Value(value_type, value if isinstance(value, int) else int(str(value), 0))


def _binary(kind: Kind, params: dict[str, Any]) -> bytes | None:
    if kind.binary is None:
        return None
    how, templates = kind.binary
    if how == "hex":
        value = fill(templates[0], params, kind.name)
        return value if isinstance(value, bytes) else bytes.fromhex(str(value))
    return b"".join(str(fill(t, params, kind.name)).encode("utf-16-le") + b"\0\0" for t in templates)


def payload(kind: Kind, params: dict[str, Any]) -> Payload:
    if kind.shape == "classic":
        return Classic(tuple(str(fill(t, params, kind.name)) for t in kind.strings), _binary(kind, params))
    values = tuple((f.name, typed(fill(f.template, params, kind.name), f.type)) for f in kind.fields)
    if kind.shape == "eventdata":
        return EventData(values, kind.template_name, _binary(kind, params))
    return UserData(kind.root, kind.xmlns, values)


def make_event(
    kind: Kind,
    *,
    time: datetime,
    computer: str,
    params: dict[str, Any],
    process_id: int = 0,
    thread_id: int = 0,
    activity_id: str | None = None,
    record_id: int | None = None,
) -> ForgedEvent:
    """One ForgedEvent of `kind` at `time` (already in the host's clock) on `computer`."""
    return ForgedEvent(
        time=time,
        provider=kind.provider,
        event_id=kind.event_id,
        channel=kind.channel,
        computer=computer,
        payload=payload(kind, params),
        level=kind.level,
        provider_guid=kind.guid,
        event_source_name=kind.event_source_name,
        qualifiers=kind.qualifiers,
        version=kind.version,
        task=kind.task,
        opcode=kind.opcode,
        keywords=kind.keywords,
        process_id=process_id,
        thread_id=thread_id,
        user_sid=str(fill(kind.user, params, kind.name)) if kind.user and "{" in kind.user else kind.user,
        activity_id=activity_id,
        record_id=record_id,
    )


def message(kind: Kind, params: dict[str, Any], inserts: dict[str, str] | None = None) -> str:
    """A short English rendering for text exports (TSS .csv/.txt); not used by the analyzer."""
    shown = {k: (inserts or {}).get(v, v) if isinstance(v, str) else v for k, v in params.items()}
    try:
        return str(fill(kind.message, shown, kind.name)) if kind.message else ""
    except ScenarioError:
        return ""
