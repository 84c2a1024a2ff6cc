"""Bundles: the folder (or zip) of .evtx files a support engineer receives, in the layouts tools produce.

Layouts (LAYOUTS), each a function (host, channel) -> relative file name:
* plain:        HV01/System.evtx, HV01/Microsoft-Windows-FailoverClustering%4Operational.evtx (the
                file names Windows gives exported/copied logs: '/' in a channel becomes '%4');
* tss:          HV01_evt_System.evtx, flat, with a .csv and a .txt export beside each (INFERRED names);
* privatecloud: HV01_UnfilteredEvent_Microsoft-Windows-FailoverClustering-Operational.EVTX, flat
                (PrivateCloud.DiagnosticInfo: `$Node+"_UnfilteredEvent_"+$LogName.Replace("/","-")+".EVTX"`).
Same scenario and seed give byte-identical files; zips are deterministic (fixed dates, sorted entries).
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from evtxcorr.forge.catalog import load_catalog, message
from evtxcorr.forge.events import Classic, EventData, ForgedEvent, UserData
from evtxcorr.forge.exports import FORMATS, write_export
from evtxcorr.forge.scenario import SCENARIO_ID, Scenario
from evtxcorr.forge.timeline import as_scenario, iter_expand
from evtxcorr.forge.writer import evtx_bytes, write_evtx

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "bundles"
ZIP_DATE = (2026, 1, 1, 0, 0, 0)


def _plain(host: str, channel: str) -> str:
    return f"{host}/{channel.replace('/', '%4')}.evtx"


def _tss(host: str, channel: str) -> str:
    return f"{host}_evt_{channel.replace('/', '-')}.evtx"


def _privatecloud(host: str, channel: str) -> str:
    return f"{host}_UnfilteredEvent_{channel.replace('/', '-')}.EVTX"


LAYOUTS: dict[str, Callable[[str, str], str]] = {"plain": _plain, "tss": _tss, "privatecloud": _privatecloud}
_LEVELS = {1: "Critical", 2: "Error", 3: "Warning", 4: "Information", 0: "Information"}

# (bundle name, scenario id, layout, zip): every committed fixture; seeds are the scenarios' own.
FIXTURES: tuple[tuple[str, str, str, bool], ...] = (
    ("boot-time-cluster-name-failed", "boot-time-cluster-name-failed", "plain", True),
    ("boot-time-dc-not-ready", "boot-time-dc-not-ready", "plain", True),
    ("cno-disabled-or-deleted", "cno-disabled-or-deleted", "plain", True),
    ("dc-unreachable-cluster-wide", "dc-unreachable-cluster-wide", "plain", True),
    ("kerberos-clock-skew", "kerberos-clock-skew", "plain", True),
    ("kerberos-delegation-missing", "kerberos-delegation-missing", "plain", True),
    ("link-down-second-dc-path", "link-down-second-dc-path", "plain", True),
    ("noise-only", "noise-only", "plain", True),
    ("secure-channel-broken", "secure-channel-broken", "plain", True),
    ("shared-nic-link-restored", "shared-nic-link-restored", "plain", True),
    ("shared-nic-sole-dc-path", "shared-nic-sole-dc-path", "plain", True),
    ("shared-nic-twice", "shared-nic-twice", "plain", True),
    ("shared-nic-sole-dc-path-tss", "shared-nic-sole-dc-path", "tss", True),
    ("shared-nic-sole-dc-path-privatecloud", "shared-nic-sole-dc-path", "privatecloud", True),
)


STALE_CHUNKS_BEHIND = -1  # header chunk count of every forged log: one behind the chunks written


def forge_bundle(
    scenario: str | Path | Scenario,
    out_dir: Path,
    *,
    seed: int | None = None,
    scale: float = 1.0,
    layout: str = "plain",
    zip: bool = False,
    name: str | None = None,
    format: str = "evtx",
    tz: str = "UTC",
) -> list[Path]:
    """Write the scenario's bundle as out_dir/NAME/ (NAME defaults to the scenario id); returns the files.

    With zip=True the result is out_dir/NAME.zip holding the NAME/ folder, and only the zip is returned.
    `format` other than 'evtx' writes each log as that export (exports.FORMATS), its local times in `tz`.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}'; choose from {', '.join(LAYOUTS)}")
    if format != "evtx" and format not in FORMATS:
        raise ValueError(f"unknown format '{format}'; choose from evtx, {', '.join(FORMATS)}")
    scenario = as_scenario(scenario)
    name = name or scenario.id
    if not SCENARIO_ID.fullmatch(name):  # the folder is emptied first: it must be a plain child of out_dir
        raise ValueError(f"bundle name {name!r} is not a plain folder name")
    out_dir = Path(out_dir)
    folder = out_dir / name
    if folder.exists():
        shutil.rmtree(folder)
    written = []
    for fqdn, channel, first_id, events in iter_expand(scenario, seed=seed, scale=scale):
        host = fqdn.split(".")[0]
        path = folder / LAYOUTS[layout](host, channel)
        if not host or not path.resolve().is_relative_to(folder.resolve()):  # scenario.py checks names
            raise ValueError(f"host {fqdn!r} would write {path} outside {folder}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if format != "evtx":
            written.append(write_export(path, events, format, first_record_id=first_id, tz=tz))
            continue
        if layout == "tss":
            events = list(events)
            written += _text_exports(path, events)
        # As copied off a live host: dirty, and the header not yet counting the chunk being written.
        write_evtx(path, events, first_record_id=first_id, stale_chunk_count=STALE_CHUNKS_BEHIND)
        written.append(path)
    if not zip:
        return sorted(written)
    archive = out_dir / f"{name}.zip"
    write_zip(archive, folder)
    shutil.rmtree(folder)
    return [archive]


def write_zip(archive: Path, folder: Path) -> Path:
    """Zip `folder` (as its own top-level directory) with fixed dates and sorted entries."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes(), compresslevel=9)
    return archive


# --- TSS text exports --------------------------------------------------------------------------------


def _values(event: ForgedEvent) -> list[str]:
    payload = event.payload
    if isinstance(payload, Classic):
        return list(payload.strings)
    if isinstance(payload, EventData | UserData):
        return [str(v.value) for _, v in payload.fields]
    return []


def _description(event: ForgedEvent, by_id: dict) -> str:
    """The catalog's English message when the event's values fill it, else the values joined."""
    kind = _kind_of(event, by_id.get((event.provider, event.event_id), []))
    text = message(kind, _named_values(event, kind), load_catalog().inserts) if kind else ""
    return text or "; ".join(v for v in _values(event) if v)


def _kinds_by_id() -> dict:
    """(provider, event id) -> the catalog kinds written with it, in catalog order."""
    kinds: dict[tuple[str, int], list] = {}
    for kind in load_catalog().kinds.values():
        kinds.setdefault((kind.provider, kind.event_id), []).append(kind)
    return kinds


def _kind_of(event: ForgedEvent, kinds: list):  # type: ignore[no-untyped-def]
    """The first kind whose literal (placeholder-free) field values are the event's, else the first."""
    values = _values(event)
    for kind in kinds:
        literal = [(i, f.template) for i, f in enumerate(kind.fields) if "{" not in f.template]
        if all(i < len(values) and values[i] == text for i, text in literal):
            return kind
    return kinds[0] if kinds else None


def _named_values(event: ForgedEvent, kind) -> dict[str, str]:
    """Placeholder values recovered from the event (best effort: field templates that are one '{name}')."""
    values = _values(event)
    specs = (
        [t for t in kind.strings] if isinstance(event.payload, Classic) else [f.template for f in kind.fields]
    )
    named = {"host": event.computer.split(".")[0], "fqdn": event.computer}
    for template, value in zip(specs, values, strict=False):
        if template.startswith("{") and template.endswith("}") and template.count("{") == 1:
            named[template[1:-1]] = value
    return named


def _text_exports(evtx_path: Path, events: Iterable[ForgedEvent]) -> list[Path]:
    """TSS puts a .csv and a .txt rendering beside each .evtx; ours are short and English."""
    rows, blocks = [], []
    by_id = _kinds_by_id()
    for i, event in enumerate(events):
        stamp = event.time.strftime("%Y-%m-%dT%H:%M:%S.") + f"{event.time.microsecond:06d}Z"
        level = _LEVELS.get(event.level, str(event.level))
        text = _description(event, by_id)
        rows.append([stamp, level, event.provider, event.event_id, event.computer, text])
        blocks.append(
            f"Event[{i}]:\r\n  Log Name: {event.channel}\r\n  Source: {event.provider}\r\n  Date: {stamp}\r\n"
            f"  Event ID: {event.event_id}\r\n  Level: {level}\r\n  Computer: {event.computer}\r\n"
            f"  Description: \r\n{text}\r\n\r\n"
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["TimeCreated", "LevelDisplayName", "ProviderName", "Id", "MachineName", "Message"])
    writer.writerows(rows)
    csv_path, txt_path = evtx_path.with_suffix(".csv"), evtx_path.with_suffix(".txt")
    csv_path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    txt_path.write_text("".join(blocks), encoding="utf-8", newline="")
    return [csv_path, txt_path]


# --- committed fixtures and the large benchmark bundle ------------------------------------------------


def regenerate_fixtures(dest: Path = FIXTURE_DIR) -> list[Path]:
    """Write every committed fixture bundle (FIXTURES) into dest; same bytes on every run."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, scenario_id, layout, zipped in FIXTURES:
        stale = dest / f"{name}.zip"
        if stale.exists():
            stale.unlink()
        written += forge_bundle(scenario_id, dest, layout=layout, zip=zipped, name=name)
    return written


def bundle_digest(path: Path) -> str:
    """sha256 of a fixture: of the file, or of 'relative/path sha256' lines for a folder's files, sorted."""
    path = Path(path)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    lines = "".join(
        f"{p.relative_to(path).as_posix()} {hashlib.sha256(p.read_bytes()).hexdigest()}\n"
        for p in sorted(path.rglob("*"))
        if p.is_file()
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def provenance_rows(dest: Path = FIXTURE_DIR) -> list[str]:
    """Markdown table rows for tests/fixtures/PROVENANCE.md, one per committed bundle."""
    rows = []
    for name, scenario_id, layout, zipped in FIXTURES:
        path = Path(dest) / (f"{name}.zip" if zipped else name)
        files = [path] if zipped else [p for p in path.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        seed = as_scenario(scenario_id).seed
        rows.append(
            f"| `{path.name}` | {scenario_id} | {seed} | {layout}{' (zip)' if zipped else ''} | {len(files)} | "
            f"{size:,} | `{bundle_digest(path)}` |"
        )
    return rows


PROVENANCE = REPO_ROOT / "tests" / "fixtures" / "PROVENANCE.md"
_TABLE_HEAD = (
    "| bundle | scenario | seed | layout | files | bytes | sha256 |",
    "|---|---|---|---|---|---|---|",
)


def update_provenance(dest: Path = FIXTURE_DIR, doc: Path = PROVENANCE) -> None:
    """Rewrite the bundle table between the `<!-- bundles -->` markers of PROVENANCE.md."""
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split("<!-- bundles -->\n", 1)
    _, tail = rest.split("<!-- /bundles -->", 1)
    table = "\n".join((*_TABLE_HEAD, *provenance_rows(dest)))
    doc.write_text(f"{head}<!-- bundles -->\n{table}\n<!-- /bundles -->{tail}", encoding="utf-8")


def forge_large_bundle(
    out_dir: Path,
    size_mb: float = 200,
    *,
    scenario: str = "shared-nic-sole-dc-path",
    history_days: float | None = None,
    seed: int | None = None,
) -> tuple[list[Path], dict[str, float]]:
    """A bundle of about `size_mb` MB (4 nodes for the default scenario): the scenario's incident at the
    end of `history_days` of denser noise (default: 60 days for 200 MB, fewer for smaller bundles, as
    noise is never thinned below the scenario's own level). Never committed; returns the files and
    what it measured."""
    if history_days is None:
        history_days = 60 * min(1.0, size_mb / 200)
    base = as_scenario(scenario)
    stretched = replace(base, history=base.history + history_days * 86400)
    scale = _scale_for(stretched, size_mb * 1_000_000, seed)
    started = time.perf_counter()
    files = forge_bundle(stretched, Path(out_dir), seed=seed, scale=scale, name=f"{base.id}-large")
    seconds = time.perf_counter() - started
    total = sum(p.stat().st_size for p in files)
    return files, {"scale": scale, "bytes": total, "seconds": seconds, "files": len(files)}


def _scale_for(scenario: Scenario, target_bytes: float, seed: int | None) -> float:
    """Noise scale that makes the bundle about target_bytes: measure one day of one node's System log at
    scale 1, then once more at the first estimate (periodic noise does not scale, so bytes are not linear)."""
    days = (scenario.history + scenario.duration) / 86400
    scale = 1.0
    for _ in range(2):
        day_bytes = _system_day_bytes(scenario, seed, scale)
        scale = max(1.0, scale * target_bytes / (day_bytes * days * len(scenario.nodes)))
    return scale


def _system_day_bytes(scenario: Scenario, seed: int | None, scale: float) -> int:
    probe = replace(scenario, history=86400.0, duration=0.0, incidents=())
    for _, channel, first_id, events in iter_expand(probe, seed=seed, scale=scale):
        if channel == "System":
            return len(evtx_bytes(list(events), first_record_id=first_id))
    return 1
