"""Scenario -> events: place incident steps and noise episodes in true time, then log them per host.

Everything random comes from `random.Random` seeded with text built from the seed and a stream name
(incident id, host, episode), so one stream's draws never shift another's, and the same seed gives the
same events. Noise is generated lazily in time order, so a large bundle streams instead of piling up.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from evtxcorr.forge.catalog import Catalog, Kind, load_catalog, make_event
from evtxcorr.forge.events import ForgedEvent
from evtxcorr.forge.scenario import (
    Episode,
    Incident,
    NoiseModel,
    Quiet,
    Scenario,
    Span,
    Step,
    load_noise,
    load_scenario,
)
from evtxcorr.forge.yamlcheck import ScenarioError

CHANNELS = (
    "System",
    "Microsoft-Windows-FailoverClustering/Operational",
    "Microsoft-Windows-Hyper-V-High-Availability-Admin",
    "Microsoft-Windows-Hyper-V-VMMS-Admin",
)
_FIRST_IDS = {  # plausible first EventRecordID per channel of a long-running node
    "System": (20_000, 900_000),
    "Microsoft-Windows-FailoverClustering/Operational": (1_000, 60_000),
    "Microsoft-Windows-Hyper-V-High-Availability-Admin": (100, 9_000),
    "Microsoft-Windows-Hyper-V-VMMS-Admin": (500, 40_000),
}


def rng_for(seed: int, *parts: object) -> random.Random:
    """An independent, reproducible random stream named by `parts`."""
    return random.Random("|".join(str(p) for p in (seed, *parts)))


def draw(rng: random.Random, bounds: Span) -> float:
    low, high = bounds
    return low if low == high else rng.uniform(low, high)


def _guid(rng: random.Random) -> str:
    return "{" + str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper() + "}"


@dataclass(frozen=True)
class Placed:
    """One event in TRUE time, before the host's clock offset is applied."""

    time: datetime
    host: str
    kind: str
    params: Mapping[str, Any]
    thread: int
    activity: str
    label: str | None = None


@dataclass
class Host:
    """What stays the same for a node during a scenario: its clock, pids, boot time, context params."""

    name: str
    fqdn: str
    offset: timedelta
    boot: datetime
    pids: dict[str, int]
    params: dict[str, Any]
    first_ids: dict[str, int] = field(default_factory=dict)


# --- context ---------------------------------------------------------------------------------------


def base_params(scenario: Scenario) -> dict[str, Any]:
    domain, cluster = scenario.domain, scenario.cluster
    dc_fqdn = f"{domain['dc']}.{domain['fqdn']}" if "." not in domain["dc"] else domain["dc"]
    return {
        "domain": domain["fqdn"],
        "realm": domain["fqdn"].upper(),  # Kerberos writes the realm in upper case
        "netbios": domain["netbios"],
        "dc": dc_fqdn,
        "dc_short": dc_fqdn.split(".")[0],
        "dc_ip": domain.get("dc_ip", "10.10.0.10"),
        "admin_sid": domain.get("sid", "S-1-5-21-3623811015-3361044348-30300820") + "-500",
        "cluster": cluster["name"],
        "cluster_network": cluster["network"],
        "adapter": cluster.get("adapter", "vEthernet (External)"),
        **scenario.params,
    }


def hosts(scenario: Scenario, seed: int, catalog: Catalog) -> dict[str, Host]:
    base = base_params(scenario)
    dc_ip = bytes(int(part) for part in base["dc_ip"].split("."))
    out = {}
    for node in scenario.nodes:
        rng = rng_for(seed, "host", node.name)
        pids = {
            name: 4 * rng.randint(low // 4, high // 4)
            for name, (low, high) in sorted(catalog.processes.items())
        }
        boot = (
            scenario.start
            - timedelta(seconds=scenario.history)
            - timedelta(seconds=rng.uniform(3 * 86400, 40 * 86400))
        )
        params = {
            **base,
            "host": node.name,
            "fqdn": node.fqdn,
            "nic": node.nic,
            "ip": node.ip,
            "tcpip_device": "\\DEVICE\\TCPIP_" + _guid(rng),
            "time_source": f"{base['dc']} (ntp.d|{node.ip}:123->{base['dc_ip']}:123)",
            "dns_server_sockaddr": (b"\x02\x00\x00\x00" + dc_ip).ljust(128, b"\0").hex().upper(),
        }
        first_ids = {ch: rng.randint(*_FIRST_IDS[ch]) for ch in CHANNELS}
        out[node.name] = Host(
            node.name, node.fqdn, timedelta(seconds=node.clock_offset), boot, pids, params, first_ids
        )
    return out


def eval_params(
    spec: Mapping[str, Any], rng: random.Random, lists: Mapping[str, list], context: Mapping[str, Any]
) -> dict:
    """Draw param values: literals, {pick}, {range}, {uniform}, {guid}; picked mappings merge in."""
    out: dict[str, Any] = {}
    for name, value in spec.items():
        if isinstance(value, dict) and "pick" in value:
            choices = lists[value["pick"]] if isinstance(value["pick"], str) else value["pick"]
            picked = rng.choice(choices)
            if isinstance(picked, dict):
                out.update(picked)
            else:
                out[name] = picked
        elif isinstance(value, dict) and "range" in value:
            out[name] = rng.randint(*value["range"])
        elif isinstance(value, dict) and "uniform" in value:
            out[name] = f"{rng.uniform(*value['uniform']):.{value.get('digits', 3)}f}"
        elif isinstance(value, dict) and "guid" in value:
            out[name] = _guid(rng)
        elif isinstance(value, str) and "{" in value:
            out[name] = value.format_map({**context, **out})
        else:
            out[name] = value
    return out


# --- placing steps ---------------------------------------------------------------------------------


def _resolve_hosts(role: str, roles: Mapping[str, str], names: list[str]) -> list[str]:
    if role == "all":
        return list(names)
    if role == "others":
        return [n for n in names if n != roles["source"]]
    return [roles.get(role, role)]


def place_steps(
    steps: Iterable[Step],
    t0: datetime,
    roles: Mapping[str, str],
    names: list[str],
    rng: random.Random,
    params: Mapping[str, Any],
    lists: Mapping[str, list],
) -> tuple[list[Placed], dict[str, datetime]]:
    """Events for `steps` starting at t0; returns them and the time of each label (drawn even if skipped)."""
    labels: dict[str, datetime] = {}
    placed: list[Placed] = []
    for step in steps:
        base = labels.get(step.after, t0) if step.after else t0
        step_params = {**params, **eval_params(step.params, rng, lists, params)}
        count = 1 + (round(draw(rng, step.repeat[0])) if step.repeat else 0)
        for host in _resolve_hosts(step.host, roles, names):
            when = base + timedelta(seconds=draw(rng, step.at))
            for occurrence in range(count):
                if occurrence:
                    when += timedelta(seconds=draw(rng, step.repeat[1]))  # type: ignore[index]
                if step.label and step.label not in labels:
                    labels[step.label] = when
                thread, activity = 4 * rng.randint(30, 3000), _guid(rng)
                if step.chance >= 1 or rng.random() < step.chance:
                    placed.append(Placed(when, host, step.kind, step_params, thread, activity, step.label))
    return placed, labels


@dataclass(frozen=True)
class PlacedIncident:
    incident: Incident
    start: datetime  # T, true time
    events: tuple[Placed, ...]
    labels: Mapping[str, datetime]
    quiet: tuple[tuple[frozenset[str], frozenset[str], datetime, datetime], ...]  # hosts, kinds, from, until


def incident_params(scenario: Scenario, incident: Incident, base: Mapping[str, Any]) -> dict[str, Any]:
    vm = next(v for v in scenario.vms if v.name == incident.vm)
    source, peer = scenario.node(incident.host), scenario.node(incident.peer)
    return {
        **base,
        "source": source.name,
        "source_fqdn": source.fqdn,
        "peer": peer.name,
        "peer_fqdn": peer.fqdn,
        "vm": vm.name,
        "vm_id": vm.id,
        "interface": f"{source.name} - {base['adapter']}",
        "iface_node": source.name,
    }


def place_incidents(scenario: Scenario, seed: int) -> list[PlacedIncident]:
    names = [n.name for n in scenario.nodes]
    base = base_params(scenario)
    lists = load_noise().lists
    out = []
    for incident in scenario.incidents:
        rng = rng_for(seed, "incident", incident.id)
        t0 = scenario.start + timedelta(seconds=draw(rng, incident.at))
        params = incident_params(scenario, incident, base)
        params.update(eval_params(incident.params, rng, lists, params))
        roles = {"source": incident.host, "peer": incident.peer}
        events, labels = place_steps(incident.steps, t0, roles, names, rng, params, lists)
        quiet = tuple(_quiet_window(q, t0, labels, roles, names, rng) for q in incident.quiet)
        out.append(PlacedIncident(incident, t0, tuple(sorted(events, key=lambda e: e.time)), labels, quiet))
    return out


def _quiet_window(q: Quiet, t0: datetime, labels: Mapping[str, datetime], roles, names, rng):
    def point(p: str | Span) -> datetime:
        return labels[p] if isinstance(p, str) else t0 + timedelta(seconds=draw(rng, p))

    return (frozenset(_resolve_hosts(q.hosts, roles, names)), q.kinds, point(q.start), point(q.until))


# --- noise -----------------------------------------------------------------------------------------


def _occurrences(
    episode: Episode, rng: random.Random, start: datetime, end: datetime, rate_scale: float
) -> Iterator[datetime]:
    span_s = (end - start).total_seconds()
    if episode.every:
        t = rng.uniform(0, episode.every[1])
        while t < span_s:
            yield start + timedelta(seconds=t)
            t += draw(rng, episode.every)
        return
    rate = (episode.per_hour or 0) * rate_scale / 3600.0
    if rate <= 0:
        return
    t = rng.expovariate(rate)
    while t < span_s:
        yield start + timedelta(seconds=t)
        t += rng.expovariate(rate)


def episode_stream(
    scenario: Scenario, seed: int, episode: Episode, scope_host: str | None, scale: float, model: NoiseModel
) -> Iterator[Placed]:
    """One noise episode's events in time order (for one node, or cluster-wide when scope_host is None)."""
    names = [n.name for n in scenario.nodes]
    rng = rng_for(seed, "noise", episode.name, scope_host or "cluster")
    base = base_params(scenario)
    start = scenario.start - timedelta(seconds=scenario.history)
    end = scenario.start + timedelta(seconds=scenario.duration)
    pending: list[tuple[datetime, int, Placed]] = []
    counter = 0
    for t in _occurrences(episode, rng, start, end, scale * scenario.noise_scale):
        while pending and pending[0][0] <= t:
            yield heapq.heappop(pending)[2]
        source = scope_host or rng.choice(names)
        peer = rng.choice([n for n in names if n != source])
        vm = rng.choice(scenario.vms)
        context = {
            **base,
            "peer": peer,
            "peer_fqdn": scenario.node(peer).fqdn,
            "vm": vm.name,
            "vm_id": vm.id,
            "activity": _guid(rng),
        }
        context.update(eval_params(episode.params, rng, model.lists, context))
        events, _ = place_steps(
            episode.steps, t, {"source": source, "peer": peer}, names, rng, context, model.lists
        )
        for event in events:
            if event.time <= end:
                heapq.heappush(pending, (event.time, counter, event))
                counter += 1
    while pending:
        yield heapq.heappop(pending)[2]


# --- logging: true time -> ForgedEvents per host and channel ---------------------------------------


def _episode_channels(episode: Episode, kinds: Mapping[str, Kind]) -> set[str]:
    return {kinds[s.kind].channel for s in episode.steps}


def host_channel_events(
    scenario: Scenario,
    seed: int,
    host: Host,
    channel: str,
    incidents: list[PlacedIncident],
    scale: float = 1.0,
) -> Iterator[ForgedEvent]:
    """Everything `host` logs in `channel`, in time order, with its clock offset and record ids."""
    catalog, model = load_catalog(), load_noise()
    kinds = catalog.kinds
    streams: list[Iterable[Placed]] = []
    for episode in model.episodes:
        if episode.name in scenario.noise_exclude or channel not in _episode_channels(episode, kinds):
            continue
        scope = host.name if episode.scope == "host" else None
        stream = episode_stream(scenario, seed, episode, scope, scale, model)
        streams.append(_keep_noise(stream, host.name, channel, kinds, incidents))
    streams.append(
        [
            e
            for inc in incidents
            for e in inc.events
            if e.host == host.name and kinds[e.kind].channel == channel
        ]
    )
    merged = heapq.merge(*streams, key=lambda e: e.time)
    for record_id, placed in enumerate(merged, start=host.first_ids[channel]):
        yield _log(placed, host, kinds[placed.kind], record_id)


def _keep_noise(stream: Iterable[Placed], host: str, channel: str, kinds, incidents) -> Iterator[Placed]:
    windows = [
        (kinds_, start, until)
        for inc in incidents
        for hosts_, kinds_, start, until in inc.quiet
        if host in hosts_
    ]
    for event in stream:
        if event.host != host or kinds[event.kind].channel != channel:
            continue
        if any(event.kind in ks and start <= event.time <= until for ks, start, until in windows):
            continue
        yield event


def _dynamic(placed: Placed, host: Host, logged: datetime) -> dict[str, Any]:
    """Values that depend on the moment: uptime, the clock before and after a time adjustment."""
    return {
        "uptime": int((placed.time - host.boot).total_seconds()),
        "now": logged,
        "systemtime": _systemtime_hex(logged),
        "old_time": logged,
        "new_time": logged + timedelta(milliseconds=int(placed.params.get("adjust_ms", 0))),
    }


def _systemtime_hex(moment: datetime) -> str:
    """A Win32 SYSTEMTIME (8 little-endian u16: year, month, weekday, day, h, m, s, ms) as hex."""
    parts = (
        moment.year,
        moment.month,
        (moment.weekday() + 1) % 7,  # SYSTEMTIME counts from Sunday = 0
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
    )
    return b"".join(p.to_bytes(2, "little") for p in parts).hex().upper()


def _log(placed: Placed, host: Host, kind: Kind, record_id: int) -> ForgedEvent:
    logged = placed.time + host.offset
    params = {**kind.defaults, **host.params, **placed.params, "host": host.name, "fqdn": host.fqdn}
    params.update(_dynamic(placed, host, logged))
    pid = host.pids[kind.process]
    activity = {"random": placed.activity, "episode": params.get("activity")}.get(kind.correlation)
    try:
        event = make_event(
            kind,
            time=logged,
            computer=host.fqdn,
            params=params,
            process_id=pid,
            thread_id=placed.thread if pid else 0,
            activity_id=activity,
            record_id=record_id,
        )
    except ScenarioError as exc:
        raise ScenarioError(f"{exc.message} (host {host.name}, {placed.time.isoformat()})") from exc
    return event


# --- public entry points ---------------------------------------------------------------------------


def as_scenario(scenario: Scenario | str | Path) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def iter_expand(
    scenario: Scenario, *, seed: int | None = None, scale: float = 1.0
) -> Iterator[tuple[str, str, int, Iterator[ForgedEvent]]]:
    """(host fqdn, channel, first record id, lazy events) per node and channel, for bundles of any size."""
    seed = scenario.seed if seed is None else seed
    incidents = place_incidents(scenario, seed)
    for host in hosts(scenario, seed, load_catalog()).values():
        for channel in CHANNELS:
            events = host_channel_events(scenario, seed, host, channel, incidents, scale)
            yield host.fqdn, channel, host.first_ids[channel], events


def expand(
    scenario: Scenario | str | Path, *, seed: int | None = None, scale: float = 1.0
) -> dict[tuple[str, str], list[ForgedEvent]]:
    """(host fqdn, channel) -> events sorted by time, for every node and the four channels."""
    expanded = iter_expand(as_scenario(scenario), seed=seed, scale=scale)
    return {(fqdn, channel): list(events) for fqdn, channel, _, events in expanded}


def truth(scenario: Scenario | str | Path, *, seed: int | None = None) -> list[dict[str, Any]]:
    """The injected incidents as the analyzer should find them; times are TRUE UTC (no clock offset).

    Each dict: scenario, incident, cause, host (fqdn of the incident's node), hosts (every node that
    logged a step), start (T: the cable pull, the DC outage...), first_event, end (last step event),
    events (label, kind, provider, event_id, channel, host, time, logged_time).
    """
    scenario = as_scenario(scenario)
    seed = scenario.seed if seed is None else seed
    kinds = load_catalog().kinds
    out = []
    for placed in place_incidents(scenario, seed):
        events = [
            {
                "label": e.label,
                "kind": e.kind,
                "provider": kinds[e.kind].provider,
                "event_id": kinds[e.kind].event_id,
                "channel": kinds[e.kind].channel,
                "host": scenario.node(e.host).fqdn,
                "time": e.time,
                "logged_time": e.time + timedelta(seconds=scenario.node(e.host).clock_offset),
            }
            for e in placed.events
        ]
        out.append(
            {
                "scenario": scenario.id,
                "incident": placed.incident.id,
                "cause": placed.incident.cause,
                "host": scenario.node(placed.incident.host).fqdn,
                "hosts": sorted({e["host"] for e in events}),
                "start": placed.start,
                "first_event": min(e["time"] for e in events),
                "end": max(e["time"] for e in events),
                "events": events,
            }
        )
    return out
