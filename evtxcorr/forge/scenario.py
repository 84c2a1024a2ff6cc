"""Scenario definitions (scenarios/*.yaml, recipes.yaml, noise.yaml) loaded into typed, checked data.

A scenario says which cluster exists (nodes, clock offsets, VMs, domain) and which incidents happen when;
recipes say what each kind of incident logs; noise.yaml says what a healthy node logs. Expansion into
events lives in timeline.py; this module only loads and validates, and every problem names its file,
line and key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from evtxcorr.errors import Location
from evtxcorr.forge.catalog import load_catalog
from evtxcorr.forge.yamlcheck import (
    Doc,
    KeyPath,
    ScenarioError,
    check,
    load_yaml,
    parse_duration,
    raise_problems,
)

FORGE_DIR = Path(__file__).parent
SCENARIO_DIR = FORGE_DIR / "scenarios"
RECIPES_PATH = FORGE_DIR / "recipes.yaml"
NOISE_PATH = FORGE_DIR / "noise.yaml"

CAUSES = (
    "shared-nic-sole-dc-path",
    "dc-unreachable-cluster-wide",
    "kerberos-delegation-missing",
    "secure-channel-broken",
    "cno-disabled-or-deleted",
    "boot-time-dc-not-ready",
    "kerberos-clock-skew",
    "unknown-auth-failure",
    "none",
)
ROLES = ("source", "peer", "others", "all")
# Names that end up in file paths: a NetBIOS-style host name, DNS labels, a scenario id (never '.', '..',
# a leading dot, or a separator, so a bundle is always written inside its folder).
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,14}")
DOMAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)*")
SCENARIO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MIN_NODES, MAX_NODES = 2, 8

_STEP = {
    "kind": ("str", True),
    "host": ("str", False),
    "at": ("range", False),
    "after": ("str", False),
    "label": ("str", False),
    "chance": ("probability", False),
    "params": ("map:any", False),
    "repeat": ({"count": ("range", True), "every": ("range", True)}, False),
}
_QUIET = {
    "hosts": ("str", True),
    "kinds": (["list", "str"], True),
    "from": ("any", True),
    "until": ("any", True),
}
_INCIDENT = {
    "id": ("str", True),
    "cause": ("str", True),
    "host": ("str", True),
    "peer": ("str", False),
    "vm": ("str", False),
    "at": ("range", True),
    "recipe": ("str", False),
    "steps": (["list", _STEP], False),
    "extra_steps": (["list", _STEP], False),
    "quiet": (["list", _QUIET], False),
    "params": ("map:any", False),
    "note": ("str", False),
}
SCENARIO_SCHEMA = {
    "id": ("str", True),
    "title": ("str", True),
    "description": ("str", False),
    "seed": ("int", True),
    "start": ("time", True),
    "duration": ("duration", True),
    "history": ("duration", False),
    "domain": (
        {
            "fqdn": ("str", True),
            "netbios": ("str", True),
            "dc": ("str", True),
            "dc_ip": ("str", False),
            "sid": ("str", False),
        },
        True,
    ),
    "cluster": ({"name": ("str", True), "network": ("str", True), "adapter": ("str", False)}, True),
    "nodes": (
        [
            "list",
            {
                "name": ("str", True),
                "clock_offset": ("number", False),
                "nic": ("str", False),
                "ip": ("str", False),
            },
        ],
        True,
    ),
    "vms": (["list", {"name": ("str", True), "id": ("str", True), "owner": ("str", True)}], True),
    "noise": ({"scale": ("number", False), "exclude": (["list", "str"], False)}, False),
    "incidents": (["list", _INCIDENT], False),
    "params": ("map:any", False),
}
_RECIPES_SCHEMA = {"recipes": ("map:any", True)}
_RECIPE = {
    "description": ("str", False),
    "steps": (["list", _STEP], True),
    "quiet": (["list", _QUIET], False),
}
_EPISODE = {
    "name": ("str", True),
    "scope": ("str", True),
    "per_hour": ("number", False),
    "every": ("range", False),
    "params": ("map:any", False),
    "steps": (["list", _STEP], True),
}
_NOISE_SCHEMA = {"lists": ("map:any", False), "episodes": (["list", _EPISODE], True)}

Span = tuple[float, float]


@dataclass(frozen=True)
class Step:
    kind: str
    host: str = "source"
    at: Span = (0.0, 0.0)
    after: str | None = None
    label: str | None = None
    chance: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)
    repeat: tuple[Span, Span] | None = None  # (count, every)


@dataclass(frozen=True)
class Quiet:
    hosts: str
    kinds: frozenset[str]
    start: str | Span  # a step label, or seconds after the incident start
    until: str | Span


@dataclass(frozen=True)
class Incident:
    id: str
    cause: str
    host: str
    peer: str
    vm: str
    at: Span  # seconds after the scenario start
    steps: tuple[Step, ...]
    quiet: tuple[Quiet, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    name: str
    fqdn: str
    clock_offset: float = 0.0
    nic: str = "Intel(R) 82574L Gigabit Network Connection"
    ip: str = ""


@dataclass(frozen=True)
class Vm:
    name: str
    id: str
    owner: str


@dataclass(frozen=True)
class Scenario:
    id: str
    path: str
    title: str
    seed: int
    start: datetime  # true UTC
    duration: float  # seconds of logs after start
    nodes: tuple[Node, ...]
    vms: tuple[Vm, ...]
    domain: Mapping[str, str]
    cluster: Mapping[str, str]
    incidents: tuple[Incident, ...] = ()
    history: float = 0.0  # seconds of noise before start
    noise_scale: float = 1.0
    noise_exclude: frozenset[str] = frozenset()
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


@dataclass(frozen=True)
class Episode:
    name: str
    scope: str  # host | cluster
    per_hour: float | None
    every: Span | None
    params: Mapping[str, Any]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class NoiseModel:
    lists: Mapping[str, list[Any]]
    episodes: tuple[Episode, ...]


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    steps: tuple[Step, ...]
    quiet: tuple[Quiet, ...]


# --- small converters ------------------------------------------------------------------------------


def span(value: Any) -> Span:
    """(low, high) seconds from a number, a duration text or a [low, high] pair."""
    if isinstance(value, list):
        low, high = parse_duration(value[0]), parse_duration(value[1])
        return (min(low, high), max(low, high))
    seconds = parse_duration(value)
    return (seconds, seconds)


def _step(raw: dict) -> Step:
    repeat = raw.get("repeat")
    return Step(
        kind=raw["kind"],
        host=raw.get("host", "source"),
        at=span(raw.get("at", 0)),
        after=raw.get("after"),
        label=raw.get("label"),
        chance=float(raw.get("chance", 1.0)),
        params=dict(raw.get("params", {})),
        repeat=(span(repeat["count"]), span(repeat["every"])) if repeat else None,
    )


def _point(value: Any) -> str | Span:
    return value if isinstance(value, str) and not _looks_like_duration(value) else span(value)


def _looks_like_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


def _quiet(raw: dict) -> Quiet:
    return Quiet(raw["hosts"], frozenset(raw["kinds"]), _point(raw["from"]), _point(raw["until"]))


# --- semantic checks -------------------------------------------------------------------------------


def _check_steps(
    steps: list[dict], at: KeyPath, nodes: set[str], labels: set[str]
) -> list[tuple[KeyPath, str]]:
    """Kinds exist, hosts are roles or node names, `after` names an earlier label. Adds labels."""
    kinds = load_catalog().kinds
    problems = []
    for i, raw in enumerate(steps):
        here = (*at, i)
        if raw["kind"] not in kinds:
            problems.append(((*here, "kind"), f"unknown event kind '{raw['kind']}' (see catalog.yaml)"))
        host = raw.get("host", "source")
        if host not in ROLES and host not in nodes:
            problems.append(((*here, "host"), f"'{host}' is neither a role ({', '.join(ROLES)}) nor a node"))
        if raw.get("after") and raw["after"] not in labels:
            problems.append(((*here, "after"), f"no earlier step is labelled '{raw['after']}'"))
        if raw.get("label"):
            labels.add(raw["label"])
    return problems


def _check_quiet(quiet: list[dict], at: KeyPath, labels: set[str]) -> list[tuple[KeyPath, str]]:
    kinds = load_catalog().kinds
    problems = []
    for i, raw in enumerate(quiet):
        if raw["hosts"] not in ("source", "others", "all"):
            problems.append(((*at, i, "hosts"), "must be source, others or all"))
        problems += [((*at, i, "kinds"), f"unknown event kind '{k}'") for k in raw["kinds"] if k not in kinds]
        for key in ("from", "until"):
            value = raw[key]
            is_label = isinstance(value, str) and not _looks_like_duration(value)
            if is_label and value not in labels:
                problems.append(((*at, i, key), f"no step is labelled '{value}'"))
    return problems


def _check_scenario(doc: Doc, expected_id: str | None) -> list[tuple[KeyPath, str]]:
    data = doc.data
    problems: list[tuple[KeyPath, str]] = []
    if expected_id and data["id"] != expected_id:
        problems.append((("id",), f"must match the file name '{expected_id}'"))
    if not SCENARIO_ID.fullmatch(str(data["id"])):
        problems.append((("id",), "must be letters, digits, '-', '_' or '.', not starting with '.'"))
    if not DOMAIN_NAME.fullmatch(str(data["domain"].get("fqdn", ""))):
        problems.append(
            (("domain", "fqdn"), "must be a DNS name (letters, digits, '-', dots between labels)")
        )
    names = [n["name"] for n in data["nodes"]]
    problems += [
        (("nodes", i, "name"), "must be a host name: 1-15 letters, digits or '-', not starting with '-'")
        for i, name in enumerate(names)
        if not HOST_NAME.fullmatch(str(name))
    ]
    if not MIN_NODES <= len(names) <= MAX_NODES:
        problems.append((("nodes",), f"needs {MIN_NODES} to {MAX_NODES} nodes, has {len(names)}"))
    if len(set(names)) != len(names):
        problems.append((("nodes",), "node names must be unique"))
    vms = {v["name"] for v in data["vms"]}
    problems += [
        (("vms", i, "owner"), f"unknown node '{v['owner']}'")
        for i, v in enumerate(data["vms"])
        if v["owner"] not in names
    ]
    recipes = load_recipes()
    seen_ids: set[str] = set()
    for i, inc in enumerate(data.get("incidents", [])):
        at: KeyPath = ("incidents", i)
        if inc["id"] in seen_ids:
            problems.append(((*at, "id"), f"duplicate incident id '{inc['id']}'"))
        seen_ids.add(inc["id"])
        if inc["cause"] not in CAUSES:
            problems.append(((*at, "cause"), f"must be one of {', '.join(CAUSES)}"))
        if inc["host"] not in names:
            problems.append(((*at, "host"), f"unknown node '{inc['host']}'"))
        if "peer" in inc and (inc["peer"] not in names or inc["peer"] == inc["host"]):
            problems.append(((*at, "peer"), f"'{inc['peer']}' must be another node of the scenario"))
        if "vm" in inc and inc["vm"] not in vms:
            problems.append(((*at, "vm"), f"unknown VM '{inc['vm']}'"))
        if ("recipe" in inc) == ("steps" in inc):
            problems.append((at, "needs exactly one of 'recipe' or 'steps'"))
        labels: set[str] = set()
        if "recipe" in inc:
            if inc["recipe"] not in recipes:
                problems.append(((*at, "recipe"), f"unknown recipe '{inc['recipe']}' (see recipes.yaml)"))
            else:
                labels |= {s.label for s in recipes[inc["recipe"]].steps if s.label}
        problems += _check_steps(inc.get("steps", []), (*at, "steps"), set(names), labels)
        problems += _check_steps(inc.get("extra_steps", []), (*at, "extra_steps"), set(names), labels)
        problems += _check_quiet(inc.get("quiet", []), (*at, "quiet"), labels)
    return problems


# --- loading ---------------------------------------------------------------------------------------


def list_scenarios() -> list[str]:
    """Ids of the shipped scenarios (file stems under scenarios/)."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def scenario_path(path_or_id: str | Path) -> Path:
    path = Path(path_or_id)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = SCENARIO_DIR / f"{path_or_id}.yaml"
    if not candidate.exists():
        raise ScenarioError(
            f"unknown scenario '{path_or_id}'; shipped: {', '.join(list_scenarios())}", Location(str(path))
        )
    return candidate


def load_scenario(path_or_id: str | Path) -> Scenario:
    """Load and validate one scenario; raises ScenarioError naming file, line and key of each problem."""
    path = scenario_path(path_or_id)
    doc, problems = load_yaml(path)
    problems += check(doc.data, SCENARIO_SCHEMA)
    raise_problems(doc, problems)
    raise_problems(doc, _check_scenario(doc, path.stem))
    return _build_scenario(doc.data, str(path))


def _build_scenario(data: dict, path: str) -> Scenario:
    domain = dict(data["domain"])
    nodes = tuple(
        Node(
            name=n["name"],
            fqdn=f"{n['name']}.{domain['fqdn']}",
            clock_offset=float(n.get("clock_offset", 0.0)),
            nic=n.get("nic", Node.nic),
            ip=n.get("ip", f"10.10.0.{21 + i}"),
        )
        for i, n in enumerate(data["nodes"])
    )
    names = [n.name for n in nodes]
    vms = tuple(Vm(v["name"], v["id"].upper(), v["owner"]) for v in data["vms"])
    recipes = load_recipes()
    incidents = []
    for inc in data.get("incidents", []):
        recipe = recipes.get(inc.get("recipe", ""))
        steps = recipe.steps if recipe else tuple(_step(s) for s in inc["steps"])
        steps += tuple(_step(s) for s in inc.get("extra_steps", []))
        quiet = (recipe.quiet if recipe else ()) + tuple(_quiet(q) for q in inc.get("quiet", []))
        host = inc["host"]
        peer = inc.get("peer") or names[(names.index(host) + 1) % len(names)]
        owned = [v.name for v in vms if v.owner == host] or [v.name for v in vms]
        incidents.append(
            Incident(
                inc["id"],
                inc["cause"],
                host,
                peer,
                inc.get("vm", owned[0]),
                span(inc["at"]),
                steps,
                quiet,
                dict(inc.get("params", {})),
            )
        )
    noise = data.get("noise", {})
    return Scenario(
        id=data["id"],
        path=path,
        title=data["title"],
        seed=data["seed"],
        start=data["start"],
        duration=parse_duration(data["duration"]),
        nodes=nodes,
        vms=vms,
        domain=domain,
        cluster=dict(data["cluster"]),
        incidents=tuple(incidents),
        history=parse_duration(data.get("history", 0)),
        noise_scale=float(noise.get("scale", 1.0)),
        noise_exclude=frozenset(noise.get("exclude", [])),
        params=dict(data.get("params", {})),
        description=data.get("description", ""),
    )


@lru_cache(maxsize=2)
def load_recipes(path: Path = RECIPES_PATH) -> dict[str, Recipe]:
    doc, problems = load_yaml(path)
    problems += check(doc.data, _RECIPES_SCHEMA)
    raise_problems(doc, problems)
    recipes = {}
    for name, raw in doc.data["recipes"].items():
        at: KeyPath = ("recipes", name)
        more = check(raw, _RECIPE, at)
        if not more:
            labels: set[str] = set()
            more += _check_steps(raw["steps"], (*at, "steps"), set(), labels)
            more += _check_quiet(raw.get("quiet", []), (*at, "quiet"), labels)
        problems += more
        if not more:
            recipes[name] = Recipe(
                name,
                raw.get("description", ""),
                tuple(_step(s) for s in raw["steps"]),
                tuple(_quiet(q) for q in raw.get("quiet", [])),
            )
    raise_problems(doc, problems)
    return recipes


@lru_cache(maxsize=2)
def load_noise(path: Path = NOISE_PATH) -> NoiseModel:
    doc, problems = load_yaml(path)
    problems += check(doc.data, _NOISE_SCHEMA)
    raise_problems(doc, problems)
    episodes = []
    for i, raw in enumerate(doc.data["episodes"]):
        at: KeyPath = ("episodes", i)
        if raw["scope"] not in ("host", "cluster"):
            problems.append(((*at, "scope"), "must be host or cluster"))
        if ("per_hour" in raw) == ("every" in raw):
            problems.append((at, "needs exactly one of 'per_hour' or 'every'"))
        problems += _check_steps(raw["steps"], (*at, "steps"), set(), set())
        negative = [j for j, s in enumerate(raw["steps"]) if span(s.get("at", 0))[0] < 0]
        problems += [((*at, "steps", j, "at"), "noise step offsets must not be negative") for j in negative]
        episodes.append(
            Episode(
                raw["name"],
                raw["scope"],
                raw.get("per_hour"),
                span(raw["every"]) if "every" in raw else None,
                dict(raw.get("params", {})),
                tuple(_step(s) for s in raw["steps"]),
            )
        )
    raise_problems(doc, problems)
    return NoiseModel(dict(doc.data.get("lists", {})), tuple(episodes))
