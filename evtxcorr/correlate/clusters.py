"""Which failover cluster each host belongs to, and which nodes each cluster should have.

A bundle holds the logs of whoever was collected, not of the whole cluster. What the logs say about
the membership: cluster events that name a node by position (`node_names` in settings.yaml: 1126/1127
`%2`, 1135 `%1`, 1153/1641 source and target node), plus the nodes an engineer gives with `--nodes`.
A node named there without logs of its own is expected but missing, and can vouch for nothing.

Hosts of one analysis may belong to several clusters (an archive of several cases). They are told
apart by the DNS suffix of `Computer` (hosts of different domains are never one cluster), then, within
a domain, by the cluster events: hosts that name each other, directly or through other nodes, form
one cluster, and a domain is split only between such sets that each hold two or more hosts with logs
(a wrong split would take away nodes that could refute a cause). Other hosts join the largest cluster
of their domain, since nothing in the logs separates them from it; nodes given with `--nodes` are one
cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from evtxcorr.hosts import node_key, split_host
from evtxcorr.model import Cluster, Incident
from evtxcorr.ruleset import Ruleset


@dataclass(frozen=True)
class Mention:
    """A cluster event on `logged_by` naming `node` (both host keys) in `domain` ('' if unknown)."""

    logged_by: str
    domain: str
    node: str
    node_domain: str  # the domain written with the node name, '' when the event gives a short name
    name: str  # the node as written (short name upper-cased when that is all the event gives)


def mentions(frame: pd.DataFrame, signals: Mapping[int, tuple[str, ...]], ruleset: Ruleset) -> list[Mention]:
    """Every node named by position in a cluster event (settings `node_names`), with who logged it: each
    distinct mention once, in the order first met (a host names the same nodes thousands of times)."""
    by_detection: dict[str, list[int]] = {}
    wanted = {detection for detection, _field in ruleset.settings.node_names}
    for row, names in signals.items():
        for name in wanted.intersection(names):
            by_detection.setdefault(name, []).append(row)
    found: dict[tuple[object, object], Mention | None] = {}  # (host, value) -> its mention
    for detection, field in ruleset.settings.node_names:
        rows = frame.index.intersection(by_detection.get(detection, []), sort=False)
        if not len(rows) or not field.startswith("param") or not field[5:].isdigit():
            continue
        table = frame.loc[rows, ["host", "data"]]
        values = table["data"].str.get(int(field[5:]) - 1)
        for host, value in zip(table["host"], values, strict=True):
            if (host, value) not in found:
                named = node_key(value)
                found[(host, value)] = (
                    None if named is None else Mention(*split_host(host), *named, str(value).strip())
                )
    return list(dict.fromkeys(mention for mention in found.values() if mention is not None))


class _Groups:
    """Union-find over (domain, host key)."""

    def __init__(self) -> None:
        self.parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(self, item: tuple[str, str]) -> tuple[str, str]:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: tuple[str, str], b: tuple[str, str]) -> None:
        self.parent[self.find(a)] = self.find(b)


def collected_hosts(frame: pd.DataFrame, more: Iterable[str] = ()) -> dict[tuple[str, str], str]:
    """(host key, domain) -> the host as its logs write it, for every host in the table or in `more`
    (e.g. the ledger's hosts, which also counts logs whose records are not all in the table)."""
    counts: Counter[str] = Counter()
    if len(frame):
        counts.update(frame["host"].astype(str).value_counts().to_dict())
    for host in more:
        counts.setdefault(str(host), 0)
    names: dict[tuple[str, str], str] = {}
    for host, _count in counts.most_common():
        key = split_host(host)
        if key[0]:
            names.setdefault(key, host)
    return names


def find_clusters(
    hosts: Mapping[tuple[str, str], str], found: Sequence[Mention], declared: Sequence[str] = ()
) -> list[Cluster]:
    """Group the hosts with logs into clusters; each cluster's expected nodes (see the module doc)."""
    groups = _Groups()
    for key in hosts:
        groups.find(key)
    linked: set[tuple[str, str]] = set()
    for mention in found:
        logger = (mention.logged_by, mention.domain)
        node = (mention.node, mention.node_domain or mention.domain)
        if node[1] != logger[1]:
            continue  # a node of another domain is not a member of this host's cluster
        groups.union(logger, node)
        linked.update((logger, node))
    for domain in {key[1] for key in hosts}:  # the engineer's list holds one cluster's nodes
        listed = [(k, d or domain) for k, d in map(split_host, declared) if k and (d or domain) == domain]
        for a, b in zip(listed, listed[1:], strict=False):
            groups.union(a, b)
            linked.update((a, b))
    members: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for key in list(groups.parent):
        members.setdefault(groups.find(key), set()).add(key)
    by_domain: dict[str, list[set[tuple[str, str]]]] = {}
    for group in members.values():
        by_domain.setdefault(next(iter(group))[1], []).append(group)
    merged: list[tuple[set[tuple[str, str]], str]] = []
    for _domain, parts in sorted(by_domain.items(), key=lambda item: item[0]):
        # Split a domain only between host sets that each hold two or more linked hosts with logs: one
        # host's events naming a few nodes are too little to tell its cluster from the others.
        with_links = [g for g in parts if len(g & linked & set(hosts)) >= 2]
        if len(with_links) <= 1:
            merged.append((set().union(*parts), "domain" if len(by_domain) > 1 else "single"))
            continue
        loose = [g for g in parts if g not in with_links]
        with_links.sort(key=lambda g: (-len(g & set(hosts)), sorted(g)))
        with_links[0] = with_links[0].union(*loose)
        merged.extend((g, "cluster-events") for g in with_links)
    merged = [(g, basis) for g, basis in merged if g & set(hosts)]  # a named node alone is no cluster
    return _named(merged, hosts, found, declared)


def _named(
    merged: list[tuple[set[tuple[str, str]], str]],
    hosts: Mapping[tuple[str, str], str],
    found: Sequence[Mention],
    declared: Sequence[str],
) -> list[Cluster]:
    merged.sort(key=lambda item: (sorted(k[1] for k in item[0])[0], sorted(item[0])))
    domains = Counter(sorted({k[1] for k in g})[0] for g, _basis in merged)
    seen: Counter[str] = Counter()
    clusters = []
    for group, basis in merged:
        domain = sorted({k[1] for k in group})[0]
        seen[domain] += 1
        name = domain or "(no domain)"
        if domains[domain] > 1:
            name = f"{name} #{seen[domain]}"
        with_logs = sorted(k[0] for k in group if k in hosts)
        named = sorted({m.node for m in found if (m.node, m.node_domain or m.domain) in group})
        mine = _declared_for(declared, group, hosts, len(merged))
        names = {k[0]: hosts[k] for k in group if k in hosts}
        for mention in found:
            names.setdefault(mention.node, mention.name if mention.node_domain else mention.name.upper())
        for text in declared:
            key = split_host(text)[0]
            names.setdefault(key, text.strip().upper() if "." not in text else text.strip())
        nodes = sorted(set(with_logs) | set(named) | set(mine))
        clusters.append(
            Cluster(
                name=name,
                domain=domain,
                hosts=tuple(with_logs),
                nodes=tuple(nodes),
                named=tuple(named),
                declared=tuple(mine),
                names={k: v for k, v in names.items() if k in nodes},
                basis=basis,
            )
        )
    return clusters


def _declared_for(
    declared: Sequence[str],
    group: set[tuple[str, str]],
    hosts: Mapping[tuple[str, str], str],
    clusters: int,
) -> list[str]:
    """The --nodes entries that belong to this cluster: all of them when there is one cluster; else
    those naming its domain or one of its hosts, and those that name no collected host anywhere."""
    domains = {k[1] for k in group}
    keys = {k[0] for k in group}
    everywhere = {k[0] for k in hosts}
    mine = []
    for text in declared:
        key, domain = split_host(text)
        if not key:
            continue
        if clusters == 1 or (domain and domain in domains) or (not domain and key in keys):
            mine.append(key)
        elif not domain and key not in everywhere:
            mine.append(key)  # nobody's: expected in every cluster, so it can vouch for none
    return mine


def rows_by_cluster(frame: pd.DataFrame, rows: Iterable[int], clusters: Sequence[Cluster]) -> list[list[int]]:
    """`rows` (frame labels) split by the cluster their host belongs to (a row of none is left out)."""
    owner: dict[tuple[str, str], int] = {}
    for number, cluster in enumerate(clusters):
        for key in cluster.hosts:
            owner[(key, cluster.domain)] = number
    labels = [row for row in rows if row in frame.index]
    hosts = frame.loc[labels, "host"].astype(str) if labels else pd.Series([], dtype=object)
    cluster_of = {host: owner.get(split_host(host), -1) for host in hosts.unique()}
    split: list[list[int]] = [[] for _ in clusters]
    for row, host in zip(labels, hosts, strict=True):
        if cluster_of[host] >= 0:
            split[cluster_of[host]].append(int(row))
    return split


def renumber(per_cluster: Sequence[tuple[Cluster, list[Incident]]]) -> list[list[Incident]]:
    """Incidents of all clusters numbered I1, I2... together in time order, each tagged with its
    cluster's name when there are several clusters."""
    several = len(per_cluster) > 1
    order = sorted(
        (
            (incident.start, number, position)
            for number, (_c, found) in enumerate(per_cluster)
            for position, incident in enumerate(found)
        ),
    )
    new_id = {(number, position): f"I{rank + 1}" for rank, (_t, number, position) in enumerate(order)}
    return [
        [
            replace(incident, id=new_id[(number, position)], cluster=cluster.name if several else None)
            for position, incident in enumerate(found)
        ]
        for number, (cluster, found) in enumerate(per_cluster)
    ]
