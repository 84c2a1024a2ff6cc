"""Property tests (issue 11): evidence a bundle does not hold never makes a cause look surer. For random
incidents, adding unrelated events far from every anchor, splitting the inputs, removing a node's logs
or losing records from one never raises the low end of any finding's confidence range."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import synthetic_events as se
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evtxcorr.analyze import Options, analyze
from evtxcorr.correlate import correlate
from evtxcorr.diagnose import Coverage, diagnose
from evtxcorr.forge import forge_bundle
from evtxcorr.ruleset import load_ruleset, match

RULES = load_ruleset()
HOSTS = ("HV01", "HV02", "HV03", "HV04")
SPAN = (-20000.0, 20000.0)  # every node's logs cover this; incidents happen near 0
NEAR = 900.0  # incident events fall in [-NEAR, NEAR]
# Far from every anchor: beyond the longest evidence window (3600 s), the skew and the episode gap.
FAR = NEAR + 3600 + RULES.settings.skew_s + RULES.settings.episode_gap_s + 600

EVENTS = {
    "link-down": lambda h, t: se.link_down(h, t),
    "tcpip-down": lambda h, t: se.link_down(h, t, "Tcpip"),
    "link-up": se.link_up,
    "5719": se.netlogon_5719,
    "5719-refused": lambda h, t: se.netlogon_5719(h, t, "6D0000C0"),
    "3210": se.netlogon_3210,
    "1228": se.fc_1228,
    "1228-1311": lambda h, t: se.fc_1228(h, t, "1311"),
    "1228-1326": lambda h, t: se.fc_1228(h, t, "1326"),
    "21502": se.ha_21502,
    "21502-creds": lambda h, t: se.ha_21502(h, t, "0x8009030E"),
    "21502-other": lambda h, t: se.ha_21502(h, t, "0x80090303"),
    "1129": se.gp_1129,
    "boot": lambda h, t: se.row(h, t, "EventLog", 6005, level=4),
    "1126": lambda h, t: se.fc(h, t, 1126, "HV01 - Ethernet 2", "HV01", "Cluster Network 1"),
    "noise": se.noise,
}

event = st.tuples(st.sampled_from(sorted(EVENTS)), st.sampled_from(HOSTS), st.floats(-NEAR, NEAR))
incident = st.lists(event, min_size=1, max_size=10)
far_time = st.one_of(st.floats(-SPAN[1] + 500, -FAR), st.floats(FAR, SPAN[1] - 500))
far_event = st.tuples(st.sampled_from(sorted(EVENTS)), st.sampled_from(HOSTS), far_time)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rows_of(events: list[tuple[str, str, float]]) -> list[dict]:
    return [EVENTS[kind](host, t) for kind, host, t in events]


def lows(rows: list[dict], holes: dict | None = None) -> dict[tuple, float]:
    """(cause, host, onset) -> low end of the range, for every finding, reported or rejected. `holes`:
    (host_key, channel) -> spans where that log lost records."""
    table = se.frame(rows)
    signals = match(table, RULES)
    incidents = correlate(table, signals, RULES)
    coverage = Coverage.from_frame(table, RULES.settings.coverage_slack_s, holes)
    findings, rejected = diagnose(
        table, incidents, signals, RULES, nodes=[h.lower() for h in HOSTS], coverage=coverage
    )
    return {(f.cause, f.host, f.onset): f.confidence_range[0] for f in findings + rejected}


def never_raised(before: dict[tuple, float], after: dict[tuple, float]) -> None:
    for key, low in after.items():
        if key in before:
            assert low <= before[key] + 1e-9, (key, before[key], low)


@PROPERTY
@given(incident, st.lists(far_event, min_size=1, max_size=8))
def test_unrelated_events_far_from_every_anchor_never_raise_the_low_end(events, far) -> None:
    base = se.cluster(HOSTS, start=SPAN[0], end=SPAN[1]) + rows_of(events)
    before = lows(base)
    after = lows(base + rows_of(far))
    never_raised(before, after)
    assert set(before) <= set(after)  # nothing found before is lost either


@PROPERTY
@given(incident, st.sampled_from(HOSTS), st.booleans())
def test_removing_a_nodes_logs_never_raises_the_low_end(events, host, system_only) -> None:
    rows = se.cluster(HOSTS, start=SPAN[0], end=SPAN[1]) + rows_of(events)
    key = host.lower()
    kept = [r for r in rows if not (r["host_key"] == key and (r["channel"] == "System" or not system_only))]
    never_raised(lows(rows), lows(kept))


@PROPERTY
@given(
    incident,
    st.lists(
        st.tuples(
            st.sampled_from(HOSTS),
            st.sampled_from(("System", se.HA_CHANNEL)),
            st.floats(-3 * NEAR, 3 * NEAR),
            st.floats(1, 2 * NEAR),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_records_lost_from_a_log_never_raise_the_low_end(events, lost) -> None:
    """A damaged log (records lost between two times: a zeroed chunk, a bad record) vouches for less."""
    rows = se.cluster(HOSTS, start=SPAN[0], end=SPAN[1]) + rows_of(events)
    holes: dict[tuple[str, str], tuple] = {}
    for host, channel, start, length in lost:
        key = (host.lower(), channel)
        holes[key] = (*holes.get(key, ()), (se.at(start), se.at(start + length)))
    never_raised(lows(rows), lows(rows, holes))


@PROPERTY
@given(incident, st.lists(st.integers(0, 3), min_size=1, max_size=400))
def test_spreading_rows_over_several_files_changes_nothing(events, parts) -> None:
    rows = se.cluster(HOSTS, start=SPAN[0], end=SPAN[1]) + rows_of(events)
    split = [{**r, "file": f"part{parts[n % len(parts)]}/{r['file']}"} for n, r in enumerate(rows)]
    assert lows(split) == lows(rows)


# --- through analyze: a forged bundle split into several inputs ----------------------------------


@pytest.fixture(scope="module")
def forged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple, tuple]]:
    out = tmp_path_factory.mktemp("forged")
    forge_bundle("shared-nic-sole-dc-path", out)
    bundle = out / "shared-nic-sole-dc-path"
    return bundle, _verdicts(analyze([bundle], Options()))


def _verdicts(report: object) -> dict[tuple, tuple]:
    found = report.findings + report.rejected  # type: ignore[attr-defined]
    return {(f.cause, f.host, f.onset): (f.confidence_range, f.certainty) for f in found}


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 2), min_size=4, max_size=40))
def test_a_bundle_split_into_several_zips_gives_the_same_verdicts(forged, tmp_path_factory, parts) -> None:
    bundle, whole = forged
    out = tmp_path_factory.mktemp("split")
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    archives: dict[int, zipfile.ZipFile] = {}
    for number, path in enumerate(files):
        part = parts[number % len(parts)]
        if part not in archives:
            archives[part] = zipfile.ZipFile(out / f"part{part}.zip", "w", zipfile.ZIP_DEFLATED)
        archives[part].write(path, path.relative_to(bundle).as_posix())  # each zip numbers its members from 1
    for archive in archives.values():
        archive.close()
    assert _verdicts(analyze(sorted(out.glob("*.zip")), Options())) == whole
