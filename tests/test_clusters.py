"""Clusters and their nodes (issue 11: nodes from the cluster, not from the bundle; issue 13: one cluster
never vouches for another): who is a node, how hosts are grouped, and analyze end to end on forge bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import synthetic_events as se
from click.testing import CliRunner

from evtxcorr.analyze import Options, analyze
from evtxcorr.cli import cli
from evtxcorr.correlate.clusters import collected_hosts, find_clusters, mentions, node_key
from evtxcorr.forge import forge_bundle
from evtxcorr.ruleset import load_ruleset, match

RULES = load_ruleset()
SCENARIOS = Path(__file__).resolve().parents[1] / "evtxcorr" / "forge" / "scenarios"


def clusters_of(rows: list[dict], declared: tuple[str, ...] = ()) -> list:
    table = se.frame(rows)
    return find_clusters(collected_hosts(table), mentions(table, match(table, RULES), RULES), declared)


def test_nodes_named_in_cluster_events_join_the_node_list() -> None:
    rows = se.cluster(("HV01", "HV02"))
    rows += [
        se.fc("HV01", 10, 1126, "HV04 - Ethernet", "HV04", "Cluster Network 1"),
        se.fc("HV02", 20, 1135, "HV05.contoso.local"),
        se.role_move("HV02", 30, "HV02", "HV03"),
        se.fc_op("HV01", 40, 1153, "SQL01", "HV01", "HV06"),
    ]
    (cluster,) = clusters_of(rows)
    assert cluster.hosts == ("hv01", "hv02")
    assert cluster.nodes == ("hv01", "hv02", "hv03", "hv04", "hv05", "hv06")
    assert cluster.missing == ("hv03", "hv04", "hv05", "hv06")
    assert cluster.names["hv05"] == "HV05.contoso.local" and cluster.names["hv03"] == "HV03"


def test_only_host_names_are_taken_from_event_data() -> None:
    assert node_key("HV01") == ("hv01", "") and node_key("hv02.contoso.local") == ("hv02", "contoso.local")
    for text in ("", "  ", "HV01 - Ethernet 2", "<script>", "a;b", "Cluster Name", "x" * 70):
        assert node_key(text) is None, text
    rows = se.cluster(("HV01",)) + [
        se.fc("HV01", 1, 1135, "<img src=x>"),
        se.role_move("HV01", 2, "", "HV01"),
    ]
    assert clusters_of(rows)[0].nodes == ("hv01",)


def test_nodes_given_by_the_engineer_are_expected() -> None:
    (cluster,) = clusters_of(se.cluster(("HV01", "HV02")), ("HV01", "hv03.contoso.local"))
    assert cluster.nodes == ("hv01", "hv02", "hv03") and cluster.declared == ("hv01", "hv03")


def test_hosts_of_two_domains_are_two_clusters() -> None:
    rows = se.cluster(("HV01", "HV02")) + se.cluster(("HV01.fabrikam.local", "HVB2.fabrikam.local"))
    found = clusters_of(rows)
    assert [(c.name, c.domain, c.hosts, c.basis) for c in found] == [
        ("contoso.local", "contoso.local", ("hv01", "hv02"), "domain"),
        ("fabrikam.local", "fabrikam.local", ("hv01", "hvb2"), "domain"),
    ]


def test_host_sets_that_never_name_each_other_are_two_clusters() -> None:
    rows = se.cluster(("HV01", "HV02", "HV03", "HVX1", "HVX2", "HVX3"))
    rows += [se.role_move("HV01", 0, "HV01", "HV02"), se.fc("HV03", 5, 1126, "HV02 - E", "HV02", "N")]
    rows += [se.role_move("HVX1", 0, "HVX1", "HVX2")]
    found = clusters_of(rows)
    assert [(c.hosts, c.basis) for c in found] == [
        (("hv01", "hv02", "hv03", "hvx3"), "cluster-events"),  # hvx3 named by nobody joins the largest
        (("hvx1", "hvx2"), "cluster-events"),
    ]
    assert [c.name for c in found] == ["contoso.local #1", "contoso.local #2"]


def test_one_host_naming_a_few_nodes_does_not_split_its_domain() -> None:
    rows = se.cluster(("HV01", "HV02")) + [se.role_move("HV01", 0, "HV01", "HV03")]
    rows.append(se.role_move("HV02", 0, "HV02", "HV04"))
    (cluster,) = clusters_of(rows)
    assert cluster.hosts == ("hv01", "hv02") and cluster.missing == ("hv03", "hv04")


def test_nodes_given_together_are_one_cluster() -> None:
    rows = se.cluster(("HV01", "HV02", "HVX1", "HVX2"))
    rows += [se.role_move("HV01", 0, "HV01", "HV02"), se.role_move("HVX1", 0, "HVX1", "HVX2")]
    assert len(clusters_of(rows)) == 2
    (cluster,) = clusters_of(rows, ("HV01", "HV02", "HVX1", "HVX2"))
    assert cluster.hosts == ("hv01", "hv02", "hvx1", "hvx2")


def test_one_cluster_of_a_domain_takes_its_unnamed_hosts() -> None:
    rows = se.cluster(("HV01", "HV02", "HV03")) + [se.role_move("HV01", 0, "HV01", "HV02")]
    ((cluster),) = clusters_of(rows)
    assert cluster.hosts == ("hv01", "hv02", "hv03") and cluster.basis == "single"


# --- analyze, end to end on forge bundles ----------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shared-nic-sole-dc-path (contoso.local, HV01-HV04) and a cluster-wide DC outage forged for a
    fabrikam.local cluster whose nodes are also called HV01-HV08, timed over HV01's cable pull."""
    out = tmp_path_factory.mktemp("two-domains")
    text = (SCENARIOS / "dc-unreachable-cluster-wide.yaml").read_text(encoding="utf-8")
    for old, new in (
        ("id: dc-unreachable-cluster-wide", "id: dc-outage-fabrikam"),
        ("start: 2026-09-16T07:00:00Z", "start: 2026-09-15T09:58:00Z"),
        ("fqdn: contoso.local, netbios: CONTOSO", "fqdn: fabrikam.local, netbios: FABRIKAM"),
    ):
        assert old in text
        text = text.replace(old, new)
    (out / "dc-outage-fabrikam.yaml").write_text(text, encoding="utf-8")
    forge_bundle(str(out / "dc-outage-fabrikam.yaml"), out)
    forge_bundle("shared-nic-sole-dc-path", out)
    return out


def test_two_clusters_in_one_analyze_each_get_their_own_verdict(bundles: Path) -> None:
    """Analysed together, fabrikam's outage used to refute contoso's cable pull and blame contoso's HV01
    for a cluster-wide outage; each cluster is now correlated and diagnosed alone."""
    report = analyze([bundles / "dc-outage-fabrikam", bundles / "shared-nic-sole-dc-path"], Options())
    assert [(c.name, len(c.hosts), c.missing) for c in report.clusters] == [
        ("contoso.local", 4, ()),
        ("fabrikam.local", 8, ()),
    ]
    verdicts = {(f.cluster, f.cause) for f in report.findings}
    assert verdicts == {
        ("contoso.local", "shared-nic-sole-dc-path"),
        ("fabrikam.local", "dc-unreachable-cluster-wide"),
    }
    assert [f.host for f in report.findings if f.cluster == "contoso.local"] == ["hv01"]
    outage = [f for f in report.findings if f.cluster == "fabrikam.local"]  # cluster-scoped: one verdict
    assert [(f.host, len(f.hosts)) for f in outage] == [(None, 8)]
    assert {(i.id, i.cluster) for i in report.incidents} == {
        ("I1", "contoso.local"),
        ("I2", "fabrikam.local"),
    }
    alone = analyze([bundles / "shared-nic-sole-dc-path"], Options()).findings
    together = [f for f in report.findings if f.cluster == "contoso.local"]
    assert [(f.cause, f.confidence, f.confidence_range) for f in together] == [
        (f.cause, f.confidence, f.confidence_range) for f in alone
    ]


def test_the_report_names_the_clusters_and_suggests_batch(bundles: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["analyze", str(bundles / "dc-outage-fabrikam"), str(bundles / "shared-nic-sole-dc-path")]
    result = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "evtxcorr batch" in result.output
    data = json.loads((out / "evtxcorr-report.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in data["clusters"]] == ["contoso.local", "fabrikam.local"]
    assert {f["host"] for f in data["findings"] if f["cluster"] == "contoso.local"} == {"HV01.contoso.local"}
    for name in ("evtxcorr-report.md", "evtxcorr-report.html"):
        text = (out / name).read_text(encoding="utf-8")
        assert "evtxcorr batch" in text and "fabrikam.local" in text


def test_a_node_without_logs_is_shown_missing_and_leaves_the_finding_unconfirmed(
    bundles: Path, tmp_path: Path
) -> None:
    """HV02's logs are left out of the shared-NIC bundle: the cluster's own events still name HV02, so
    it is an expected node without logs, and the verdict says it is unconfirmed. --nodes adds HV05."""
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles / "shared-nic-sole-dc-path", bundle)
    shutil.rmtree(bundle / "HV02")
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["analyze", str(bundle), "--nodes", "HV01,HV05", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "evtxcorr-report.json").read_text(encoding="utf-8"))
    (cluster,) = data["clusters"]
    assert cluster["missing"] == ["HV02", "HV05"] and "HV02" in cluster["named_in_events"]
    (finding,) = data["findings"]
    low, high = finding["confidence_range"]
    assert low < 0.5 <= finding["confidence"] <= high and finding["certainty"] == "unconfirmed"
    assert {"host": "HV02", "channel": "System"} in finding["missing_logs"]
    markdown = (out / "evtxcorr-report.md").read_text(encoding="utf-8")
    assert "likely, unconfirmed" in markdown and "the System log of HV02" in markdown
    assert "nodes without logs: HV02, HV05" in result.output


def test_a_cluster_event_without_payload_names_no_node() -> None:
    """An Event Viewer CSV row of 1135 has no %1: it must not add a node called 'nan' (or '') whose
    missing logs would then leave every other-nodes item unknown."""

    assert node_key(float("nan")) is None and node_key(None) is None and node_key("") is None
    assert node_key("HV02.contoso.local") == ("hv02", "contoso.local")
