"""End to end: every forge scenario bundle through the whole pipeline, checked against its ground truth;
the shared corpus of real logs analysed completely with nothing diagnosed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from evtxcorr.analyze import Options, analyze
from evtxcorr.forge import list_scenarios, load_scenario, truth
from evtxcorr.ruleset import load_ruleset

SHARED_NIC = "shared-nic-sole-dc-path"


def _bundle(bundles_dir: Path, scenario_id: str) -> Path:
    path = bundles_dir / scenario_id
    assert path.is_dir(), f"committed fixture bundle missing: {path} (run `evtxcorr forge fixtures`)"
    return path


@pytest.fixture(scope="module")
def reports(bundles_dir: Path) -> dict[str, object]:
    return {sid: analyze([_bundle(bundles_dir, sid)]) for sid in list_scenarios()}


def test_every_scenario_has_a_committed_bundle(bundles_dir: Path) -> None:
    assert set(list_scenarios()) >= {
        SHARED_NIC,
        "dc-unreachable-cluster-wide",
        "kerberos-delegation-missing",
        "secure-channel-broken",
        "cno-disabled-or-deleted",
        "link-down-second-dc-path",
        "noise-only",
        "shared-nic-twice",
        "shared-nic-link-restored",
    }
    for sid in list_scenarios():
        _bundle(bundles_dir, sid)


@pytest.mark.parametrize("scenario_id", list_scenarios())
def test_shared_nic_finding_matches_truth(reports: dict, scenario_id: str) -> None:
    report = reports[scenario_id]
    expected = [t for t in truth(load_scenario(scenario_id)) if t["cause"] == SHARED_NIC]
    found = [f for f in report.findings if f.cause == SHARED_NIC]
    assert len(found) == len(expected), (scenario_id, [(f.host, f.confidence) for f in found])
    incidents = {i.id: i for i in report.incidents}
    for want in expected:
        host_short = want["host"].split(".")[0].lower()
        matches = [f for f in found if f.host.split(".")[0].lower() == host_short]
        assert len(matches) == 1, (want, [(f.host, f.incident) for f in found])
        finding = matches[0]
        assert finding.confidence >= 0.8, finding
        incident = incidents[finding.incident]
        # the incident's span covers the true incident time, within the clock-skew tolerance
        slack = timedelta(minutes=5)
        assert incident.start - slack <= want["start"] <= incident.end + slack, (incident, want)


@pytest.mark.parametrize("scenario_id", list_scenarios())
def test_every_finding_cites_records_that_exist(reports: dict, scenario_id: str) -> None:
    report = reports[scenario_id]
    frame = report.frame
    for finding in report.findings:
        cited = [row for ev in finding.evidence for row in ev.rows]
        assert cited, finding
        for row in cited:
            record = frame.loc[row]
            assert record["file"] and record["record_id"] > 0
        required = [ev for ev in finding.evidence if ev.role == "required"]
        assert required and all(ev.status == "present" for ev in required)


def test_noise_only_has_no_incident(reports: dict) -> None:
    report = reports["noise-only"]
    assert report.findings == []
    assert report.incidents == []
    assert report.ledger.totals()["records"] > 1000  # counted; only rule-relevant ones are decoded


def test_backends_agree_on_the_positive_bundle(bundles_dir: Path) -> None:
    rust = analyze([_bundle(bundles_dir, SHARED_NIC)])
    pure = analyze([_bundle(bundles_dir, SHARED_NIC)], Options(backend="python-evtx"))
    assert len(rust.frame) == len(pure.frame)
    assert [(f.cause, f.host, f.confidence) for f in rust.findings] == [
        (f.cause, f.host, f.confidence) for f in pure.findings
    ]


def test_corpus_is_read_completely_and_nothing_is_diagnosed(corpus_dir: Path, corpus_expected: dict) -> None:
    report = analyze([corpus_dir])
    by_name = {Path(e.path).name: e for e in report.ledger.entries}
    for name, floor in corpus_expected.items():
        entry = by_name[name]
        assert entry.format == "evtx"
        assert entry.records >= floor, (name, entry)
    assert report.findings == []
    licence = by_name["LICENSE-MIT"]
    assert licence.status == "skipped" and licence.reason


def _zip_hosts(bundle: Path, hosts: list[str], target: Path) -> Path:
    """A zip of `bundle`'s host folders `hosts`, the members named as inside the bundle."""
    import zipfile

    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for host in hosts:
            for path in sorted((bundle / host).rglob("*.evtx")):
                archive.write(path, path.relative_to(bundle).as_posix())
    return target


def _verdicts(report: object) -> list[tuple[str, str, float]]:
    return [(f.cause, f.host, f.confidence) for f in report.findings]


@pytest.mark.parametrize("scenario_id", ["secure-channel-broken", SHARED_NIC])
def test_issue_11_archives_given_together_never_collide(
    bundles_dir: Path, tmp_path: Path, scenario_id: str
) -> None:
    bundle = _bundle(bundles_dir, scenario_id)
    hosts = sorted(p.name for p in bundle.iterdir() if p.is_dir())
    whole = analyze([bundle])
    # one zip per host: every zip's first member used to be extracted to the same file name
    zips = [_zip_hosts(bundle, [host], tmp_path / f"{host}.zip") for host in hosts]
    split = analyze(zips)
    assert _verdicts(split) == _verdicts(whole) and _verdicts(whole)
    assert sorted(set(split.frame["host_key"])) == sorted(set(whole.frame["host_key"]))
    assert split.ledger.totals()["duplicates"] == 0
    assert split.ledger.totals()["records_unique"] == whole.ledger.totals()["records_unique"]


def _write_logs(folder: Path, logs: dict, **change: object) -> None:
    """Each (fqdn, channel) log of `logs` as folder/HOST/<channel>.evtx, record ids from 1 (a cleared
    log), every event changed by `change` (time shift in days, computer suffix)."""
    from dataclasses import replace

    from evtxcorr.forge.writer import write_evtx

    days, domain = change.get("days", 0), change.get("domain")
    for (fqdn, channel), events in logs.items():
        host = fqdn.split(".")[0]
        computer = f"{host}.{domain}" if domain else fqdn
        moved = [replace(e, time=e.time + timedelta(days=days), computer=computer) for e in events]
        path = folder / host / f"{channel.replace('/', '%4')}.evtx"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_evtx(path, moved, first_record_id=1)


def test_issue_11_a_reused_record_id_30_days_later_is_a_new_record(tmp_path: Path) -> None:
    """HV01's logs collected twice: in September, and 30 days later after the logs were cleared, so the
    October link-down, 5719 and 21502 reuse September's record ids. Deduplication on (host, channel,
    record id) dropped all of October as duplicates and its incident with it."""
    from evtxcorr.forge import expand

    logs = expand(load_scenario(SHARED_NIC))
    _write_logs(tmp_path / "sept", logs)
    _write_logs(tmp_path / "oct", logs, days=30)
    report = analyze([tmp_path / "sept", tmp_path / "oct"])
    assert report.ledger.totals()["duplicates"] == 0
    assert report.ledger.totals()["records_unique"] == 2 * sum(len(v) for v in logs.values())
    found = sorted(f.onset for f in report.findings if f.cause == SHARED_NIC)
    assert len(found) == 2 and found[1] - found[0] == timedelta(days=30)


def test_issue_11_same_host_name_in_two_domains_is_two_hosts(tmp_path: Path) -> None:
    """hv01.contoso.local and hv01.fabrikam.local, both with record ids from 1: two hosts, two clusters,
    nothing dropped as a duplicate (the short host name used to make them collide)."""
    from evtxcorr.forge import expand

    logs = expand(load_scenario(SHARED_NIC))
    _write_logs(tmp_path / "contoso", logs)
    _write_logs(tmp_path / "fabrikam", logs, domain="fabrikam.local")
    report = analyze([tmp_path / "contoso", tmp_path / "fabrikam"])
    assert report.ledger.totals()["duplicates"] == 0
    assert report.ledger.totals()["records_unique"] == 2 * sum(len(v) for v in logs.values())
    assert len(report.clusters) == 2
    found = sorted((f.cluster, f.cause) for f in report.findings)
    assert [c for c, cause in found if cause == SHARED_NIC] == sorted(c.name for c in report.clusters)
    # the run summary names each finding's host as its own cluster writes it (it said fabrikam twice)
    from evtxcorr.summary import summary_lines

    lines = [line for line in summary_lines(report, []) if line.lstrip().startswith("finding:")]
    assert sorted(line.split(" on ")[1].split(" (")[0] for line in lines) == [
        "HV01.contoso.local",
        "HV01.fabrikam.local",
    ]


def test_issue_11_zip_members_with_one_name_each_keep_their_own_records(
    bundles_dir: Path, tmp_path: Path
) -> None:
    import zipfile

    log = _bundle(bundles_dir, SHARED_NIC) / "HV01" / "System.evtx"
    bundle = tmp_path / "twice.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("HV01/System.evtx", b"not a log")  # a damaged copy first ...
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.write(log, "HV01/System.evtx")  # ... then the real log under the same name
    report = analyze([bundle])
    logs = [e for e in report.ledger.entries if e.path.startswith(f"{bundle}!")]
    assert [(e.path, e.status) for e in logs] == [
        (f"{bundle}!HV01/System.evtx", "skipped"),
        (f"{bundle}!HV01/System.evtx #2", "ok"),
    ]
    assert logs[0].records == 0 and logs[1].records == report.ledger.totals()["records"] > 0
    assert set(report.frame["file"]) == {f"{bundle}!HV01/System.evtx #2"}


def test_issue_11_records_zeroed_in_a_nodes_log_are_counted_and_vouch_for_nothing(
    bundles_dir: Path, tmp_path: Path
) -> None:
    """4 KiB zeroed in HV02's System log where it covers HV01's failure: the file used to read 'ok' with
    the lost records uncounted, and HV02 still vouched that it had not lost its DC (0.95, confirmed).
    The lost records are counted, the file is partial, and HV02's absence of a 5719 is unknown."""
    import shutil

    from evtxcorr.ledger import InputEntry
    from evtxcorr.model import Source
    from evtxcorr.parse import parse

    bundle = tmp_path / SHARED_NIC
    shutil.copytree(_bundle(bundles_dir, SHARED_NIC), bundle)
    whole = analyze([bundle])
    [clean] = [f for f in whole.findings if f.cause == SHARED_NIC]
    assert clean.certainty == "confirmed"
    log = bundle / "HV02" / "System.evtx"
    records = list(parse(Source(log, "System.evtx", "evtx"), InputEntry(path="System.evtx")))
    last = max((r for r in records if r["time"] <= clean.onset), key=lambda r: r["time"])
    chunk_end = 4096 + (last["chunk"] + 1) * 65536
    start = min(last["offset"] + 64, chunk_end - 4096)  # from inside the record last written before the
    data = bytearray(log.read_bytes())  # failure on, within its chunk
    data[start : start + 4096] = bytes(4096)
    log.write_bytes(bytes(data))
    report = analyze([bundle])
    [entry] = [e for e in report.ledger.entries if e.path == str(log)]
    assert entry.status == "partial" and entry.records_failed == len(records) - entry.records > 0
    assert any(lo <= clean.onset <= hi for lo, hi in entry.holes)
    [finding] = [f for f in report.findings + report.rejected if f.cause == SHARED_NIC]
    item = next(e for e in finding.evidence if e.key == "other-node-lost-dc")
    assert item.status == "unknown" and ("hv02", "System") in item.unknown_logs
    assert finding.certainty != "confirmed"
    assert finding.confidence_range[0] < load_ruleset().settings.threshold <= clean.confidence_range[0]


def test_tss_text_copies_are_the_evtx_records_again(committed_bundles: Path) -> None:
    """The TSS layout's Event Viewer CSV copies (channel named 'Microsoft-Windows-FailoverClustering-
    Operational' by the file name, '-' for '/') pair with their .evtx twins, every one of them: none is
    counted as a record of its own."""
    report = analyze([committed_bundles / "shared-nic-sole-dc-path-tss.zip"])
    totals = report.ledger.totals()
    assert set(report.frame["parser"]) == {"evtx"}
    csv = [e for e in report.ledger.entries if e.format == "csv"]
    assert csv and sum(e.records for e in csv) == sum(e.duplicates for e in csv) == totals["records_unique"]
