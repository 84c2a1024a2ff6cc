"""The command line: thin commands over the library. The only module that imports click.

Library errors (EvtxcorrError) and OS errors become one line on stderr and exit code 1 (2 for a
bad -o, found before any work); SIGINT and SIGTERM exit 130 and 143 after cleaning up (signals.py);
--debug shows tracebacks. Everything printed from the inputs goes through terminal.safe().
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from evtxcorr import __version__
from evtxcorr.errors import EvtxcorrError, OutputError
from evtxcorr.signals import Interrupted, interruptible
from evtxcorr.terminal import safe

# python-evtx logs a warning per bad BinXML token on stderr through logging's last-resort handler; the
# ledger already accounts for every record it could not read, so those lines are only noise.
logging.getLogger("Evtx").addHandler(logging.NullHandler())

# Export formats `forge build --format` writes besides evtx (evtxcorr.forge.exports.FORMATS; kept here
# as names so that --help does not import the forge).
FORGE_EXPORTS = (
    "xml", "xml-ja", "xml-wevtutil", "csv", "csv-ja", "csv-eventviewer", "csv-eventviewer-ja", "json", "json-ps5",
)  # fmt: skip

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _OptionError(click.ClickException):
    """A bad option found by checking it (not by click's parser): one 'Error:' line, exit code 2."""

    exit_code = 2


class _Group(click.Group):
    """Turns library and OS errors into 'Error: ...' lines instead of tracebacks, and signals into
    exit codes 130 (SIGINT) and 143 (SIGTERM) once every cleanup has run."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            with interruptible():
                return super().invoke(ctx)
        except Interrupted as stop:
            done = (
                "; no report written, temporary files removed" if ctx.invoked_subcommand == "analyze" else ""
            )
            click.echo(f"Error: {stop}{done}", err=True)
            raise SystemExit(stop.exit_code) from None
        except EvtxcorrError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(safe(error)) from None
        except BrokenPipeError:  # stdout closed early (`| head`): nothing left to say
            raise SystemExit(1) from None
        except OSError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            where = f"{error.filename}: " if error.filename else ""
            raise click.ClickException(safe(f"{where}{error.strerror or error}")) from None


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="evtxcorr")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Root-cause analysis of Windows event logs from Hyper-V failover clusters.

    Give it a customer's log bundle (.evtx files, folders, .zip, in any mix) and get an incident
    timeline and a cited root-cause report:

    \b
        evtxcorr analyze case-1234.zip -o report/
        evtxcorr analyze HV01/ HV02/ --format md          # Markdown on stdout
        evtxcorr analyze bundle/ --lang ja --tz Asia/Tokyo -o report.html
        evtxcorr batch /archive/ -o sweep/                 # every bundle of an archive, each alone

    Build test bundles with `evtxcorr forge`; see the rules with `evtxcorr rules`.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _zone(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(
            f"{value!r} is not an IANA time zone (try UTC, Asia/Tokyo, Europe/Berlin)"
        ) from None
    return value


def _optional_zone(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """_zone for an option that may be left out (--source-tz)."""
    return value and _zone(ctx, param, value)


@cli.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="Report file (.html, .md or .json: the suffix picks the format) or folder (an existing one, "
    "or a path ending in '/': evtxcorr-report.html/.md/.json). Never one of the inputs. "
    "Without it: Markdown on stdout.",
)
@click.option(
    "-f",
    "--format",
    "formats",
    multiple=True,
    type=click.Choice(["html", "md", "json"]),
    help="Report format; repeat for several (needs -o FOLDER). Default: all three into a folder, "
    "the suffix of -o FILE, or md on stdout.",
)
@click.option(
    "--lang", type=click.Choice(["en", "ja"]), default="en", show_default=True, help="Report language."
)
@click.option(
    "--tz",
    "tz",
    default="UTC",
    show_default=True,
    callback=_zone,
    help="Display time zone (IANA name). Analysis is always in UTC; JSON stays UTC.",
)
@click.option(
    "--source-tz",
    "source_tz",
    callback=_optional_zone,
    help="Time zone (IANA name) of the Windows machine that exported CSV files whose times are local "
    "with no zone (Event Viewer CSV, PowerShell Export-Csv). Required when such a file is given.",
)
@click.option(
    "--parser",
    "backend",
    type=click.Choice(["evtx", "python-evtx"]),
    default="evtx",
    show_default=True,
    help="Primary EVTX parser: the Rust-based evtx (fast) or pure-Python python-evtx. "
    "Each falls back to the other on records it cannot read.",
)
@click.option(
    "--rules",
    "rule_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Extra rules folder, read next to the built-in rules; repeatable.",
)
@click.option("--gap", "gap_s", type=float, help="Seconds between errors that still belong to one incident.")
@click.option(
    "--lookback", "lookback_s", type=float, help="Seconds before an incident's first error to take in."
)
@click.option("--lookahead", "lookahead_s", type=float, help="Seconds after its last error to take in.")
@click.option("--skew", "skew_s", type=float, help="Clock-skew tolerance between hosts, in seconds.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    help="Lowest confidence reported as a finding (lower ones are listed as ruled out).",
)
@click.option(
    "--nodes",
    "nodes",
    callback=lambda _ctx, _param, value: _node_list(value),
    metavar="HV01,HV02,...",
    help="The cluster's nodes, comma-separated, when you know them (Get-ClusterNode). A node without "
    "logs in the inputs can then vouch for nothing: its evidence is shown as unknown. Nodes named in "
    "the logs' cluster events are added either way.",
)
@click.option(
    "--work-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Where archive members are extracted, in a private folder removed afterwards, also on Ctrl-C "
    "or SIGTERM (default: the system temp dir).",
)
@click.option(
    "--all-records",
    is_flag=True,
    help="Decode every record into the event table. By default only records some rule can match "
    "(by provider and event id) are decoded and the rest are counted from their record headers, "
    "which gives the same report many times faster; this switch checks that claim.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 256),
    help="Worker processes reading .evtx files at once (default: the CPU count; 1: no workers).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
def analyze(
    paths: tuple[Path, ...],
    output: str | None,
    formats: tuple[str, ...],
    lang: str,
    tz: str,
    backend: str,
    rule_dirs: tuple[Path, ...],
    gap_s: float | None,
    lookback_s: float | None,
    lookahead_s: float | None,
    skew_s: float | None,
    threshold: float | None,
    nodes: tuple[str, ...],
    work_dir: Path | None,
    quiet: bool,
    source_tz: str | None,
    all_records: bool,
    jobs: int | None,
) -> None:
    """Analyse a log bundle and write the root-cause report.

    PATHS are .evtx files, folders (searched recursively), archives (.zip, .7z, .cab, .tar.gz/.tgz,
    .gz; nested too; extracted safely, within limits for the whole run) and event-log exports: Event
    Viewer or wevtutil XML, PowerShell or Event Viewer CSV, PowerShell JSON. Event logs are
    recognised by content, not by name; every file is accounted for in the report (analysed,
    partial or skipped, with the reason). Records exported twice count once.

    \b
    Examples:
        evtxcorr analyze case-1234.zip -o report/
        evtxcorr analyze HV01/System.evtx HV02/System.evtx --format json -o out.json
        evtxcorr analyze bundle/ --lang ja --tz Asia/Tokyo -o report.html
        evtxcorr analyze HV01/ HV03/ --nodes HV01,HV02,HV03 -o report/   # HV02's logs are missing
        evtxcorr analyze System.csv Cluster.xml --source-tz Asia/Tokyo -o report/

    Exit code 0 when the analysis ran, whether or not a cause was found; 1 when the input is
    unusable (a path that does not exist, no event log anywhere in it: the error says why) or the
    report cannot be written; 2 for a bad option (a bad -o is found before any work); 130 and 143
    when stopped by Ctrl-C or SIGTERM (temporary files removed, no report written).
    """
    from evtxcorr.analyze import Options
    from evtxcorr.analyze import analyze as run_analysis
    from evtxcorr.output import plan_outputs, write_reports
    from evtxcorr.progress import Progress

    try:
        plan = plan_outputs(output, formats, inputs=paths)
    except OutputError as error:
        raise _OptionError(safe(error)) from None
    options = Options(
        backend=backend,
        rule_dirs=rule_dirs,
        gap_s=gap_s,
        lookback_s=lookback_s,
        lookahead_s=lookahead_s,
        skew_s=skew_s,
        threshold=threshold,
        work_dir=work_dir,
        nodes=nodes,
        source_tz=source_tz,
        all_records=all_records,
        jobs=jobs,
    )
    with Progress(enabled=not quiet) as progress:
        report = run_analysis(list(paths), options, on_sources=progress.start, progress=progress.update)
    from evtxcorr.render import render  # pandas, jinja2: imported once parsing has started
    from evtxcorr.summary import nothing_usable, summary_lines

    unusable = nothing_usable(report.ledger, paths)
    if unusable:
        raise EvtxcorrError(unusable)
    texts = {fmt: render(report, fmt, lang=lang, tz=tz) for fmt in plan}
    files = {target: texts[fmt] for fmt, target in plan.items() if target is not None}
    write_reports(files)
    for fmt, target in plan.items():
        if target is None:
            text = texts[fmt]  # the Markdown renderer escapes control characters itself
            click.echo(text, nl=not text.endswith("\n"))
    if not quiet:
        for line in summary_lines(report, list(files)):
            click.echo(line, err=True)


def _node_list(value: str | None) -> tuple[str, ...]:
    """'HV01, hv02.contoso.local' -> ('HV01', 'hv02.contoso.local'); a name that is no host name is an error."""
    from evtxcorr.hosts import node_key

    names = tuple(part.strip() for part in (value or "").split(",") if part.strip())
    bad = [name for name in names if node_key(name) is None]
    if bad:
        raise click.BadParameter(f"not a host name: {', '.join(map(repr, bad))} (e.g. HV01,HV02)")
    return names


@cli.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "outdir",
    required=True,
    metavar="OUTDIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for OUTDIR/<case>/evtxcorr-report.* and OUTDIR/summary.html/.json/.csv.",
)
@click.option(
    "-f",
    "--format",
    "formats",
    multiple=True,
    type=click.Choice(["html", "md", "json"]),
    help="Report formats of each case; repeatable. Default: all three.",
)
@click.option(
    "--lang", type=click.Choice(["en", "ja"]), default="en", show_default=True, help="Report language."
)
@click.option(
    "--tz", "tz", default="UTC", show_default=True, callback=_zone, help="Display time zone (IANA name)."
)
@click.option(
    "--source-tz",
    "source_tz",
    callback=_optional_zone,
    help="Time zone of the machines that exported CSV files with local times (as for analyze), for "
    "every case; a case that needs it and lacks it fails, saying so.",
)
@click.option(
    "--parser",
    "backend",
    type=click.Choice(["evtx", "python-evtx"]),
    default="evtx",
    show_default=True,
    help="Primary EVTX parser (as for analyze).",
)
@click.option(
    "--rules",
    "rule_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Extra rules folder, read next to the built-in rules; repeatable.",
)
@click.option(
    "-w",
    "--workers",
    type=click.IntRange(min=1),
    help="Cases analysed at once on this machine, each in a process of its own (default: the CPU count).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run on a Dask cluster instead (tcp://HOST:PORT), one task per case. Its workers need the "
    "same evtxcorr installed and must see the input paths as this machine does. "
    "Needs pip install 'evtxcorr[dask]'.",
)
@click.option(
    "--case-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Stop a case that runs longer than S seconds and mark it failed.",
)
@click.option("--force", is_flag=True, help="Redo every case, also those a previous run finished.")
@click.option(
    "--work-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Where each case's private folder (extracted zip members) goes; removed when the case ends.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
def batch(
    paths: tuple[Path, ...],
    outdir: Path,
    formats: tuple[str, ...],
    lang: str,
    tz: str,
    source_tz: str | None,
    backend: str,
    rule_dirs: tuple[Path, ...],
    workers: int | None,
    scheduler: str | None,
    case_timeout: float | None,
    force: bool,
    work_dir: Path | None,
    quiet: bool,
) -> None:
    """Analyse every case (bundle) of an archive, each on its own, and summarise them all.

    Each child of a folder in PATHS (a folder or an archive: zip, 7z, cab, tar, tar.gz...) is one
    case; loose log files at the top of a folder form one case named after it; an archive in PATHS is
    one case. Each case gets the reports
    analyze writes, in OUTDIR/<case>/; OUTDIR/summary.html, .json and .csv list every case with its
    verdict. Run the same command again to go on after a crash or Ctrl-C: cases whose inputs and
    reports are unchanged are not redone (--force redoes them).

    \b
    Examples:
        evtxcorr batch /archive/2024/ -o /cases/2024-sweep/
        evtxcorr batch /archive/*.zip -o sweep/ --workers 4 --case-timeout 1800
        evtxcorr batch /mnt/archive/ -o /mnt/sweep/ --scheduler tcp://10.0.0.5:8786

    Exit code 0 when every case ran (a case without an event log is listed as skipped), 1 when any
    case failed (corrupt archive, time limit, error); the summary is written either way. Ctrl-C
    stops every case at once (exit code 130; 143 on SIGTERM, 129 on SIGHUP) and writes the summary
    of what is done.
    """
    import contextlib

    from evtxcorr.batch import BatchOptions, run_batch
    from evtxcorr.output import DEFAULT_FORMATS
    from evtxcorr.progress import CaseBar

    if scheduler and workers:
        raise click.UsageError("--workers is for local runs; on a Dask cluster its workers decide")
    options = BatchOptions(
        formats=tuple(dict.fromkeys(formats)) or DEFAULT_FORMATS,
        lang=lang,
        tz=tz,
        source_tz=source_tz,
        backend=backend,
        rule_dirs=rule_dirs,
        workers=workers,
        scheduler=scheduler,
        case_timeout=case_timeout,
        force=force,
        work_dir=work_dir,
    )
    try:  # signals raise Interrupted here (the group's interruptible()): cases stop, the summary is written
        with contextlib.closing(CaseBar(enabled=not quiet)) as bar:
            result = run_batch(list(paths), outdir, options, progress=bar)
    except Interrupted:
        click.echo(
            f"evtxcorr batch: interrupted; {outdir / 'summary.json'} lists the cases done. "
            "Run the same command again to do the rest.",
            err=True,
        )
        raise
    if not quiet:
        _batch_summary(result)
    if result.failed:
        raise SystemExit(1)


def _batch_summary(result) -> None:  # type: ignore[no-untyped-def]
    from evtxcorr.render.env import visible  # case names and reasons are untrusted text

    counts, shown = result.counts, 20
    total = len(result.rows)
    click.echo(
        f"evtxcorr batch: {total} case{'' if total == 1 else 's'}: {counts['ok']} analysed, "
        f"{counts['failed']} failed, {counts['skipped']} skipped "
        f"({result.ran} run now, {result.reused} unchanged since the last run)",
        err=True,
    )
    for row in result.failed[:shown]:
        click.echo(f"  failed: {visible(row['case'])}: {visible(str(row['reason']))}", err=True)
    if len(result.failed) > shown:
        click.echo(f"  ... and {len(result.failed) - shown} more failed (see summary.csv)", err=True)
    for path in result.summary_files:
        click.echo(f"  wrote {path}", err=True)


@cli.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="Timeline file to write."
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet", "jsonl", "timesketch"]),
    default="csv",
    show_default=True,
    help="csv (spreadsheets; formula-like cells neutralised), parquet (pandas; needs evtxcorr[parquet]), "
    "jsonl, timesketch (JSONL with message, datetime, timestamp_desc).",
)
@click.option(
    "--matched", is_flag=True, help="Only records a detection matched, with detection names and incident ids."
)
@click.option("--tz", default="UTC", show_default=True, callback=_zone, help="Zone the times are written in.")
@click.option(
    "--source-tz",
    "source_tz",
    callback=_optional_zone,
    help="Time zone of the machine that exported CSV files with local times (as for analyze).",
)
@click.option(
    "--work-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Where zip members are extracted and sorted runs are kept while merging (default: system temp).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
def timeline(
    paths: tuple[Path, ...],
    output: Path,
    fmt: str,
    matched: bool,
    tz: str,
    source_tz: str | None,
    work_dir: Path | None,
    quiet: bool,
) -> None:
    """Write the merged, time-ordered event table of every host (every record, or --matched ones).

    Each row says where it came from (file, record id, chunk/offset). The same record read twice,
    or as an export beside its .evtx, is written once. Streams: memory stays bounded on big bundles.

    \b
    Examples:
        evtxcorr timeline case-1234.zip -o timeline.csv
        evtxcorr timeline bundle/ -o events.parquet --format parquet --tz Asia/Tokyo
        evtxcorr timeline bundle/ -o ts.jsonl --format timesketch --matched
    """
    from evtxcorr.analyze import Options
    from evtxcorr.progress import Progress
    from evtxcorr.timeline import write_timeline

    options = Options(source_tz=source_tz, work_dir=work_dir)
    with Progress(enabled=not quiet) as progress:
        result = write_timeline(
            list(paths), output, fmt=fmt, matched=matched, tz=tz, options=options,
            progress=progress.update, on_sources=progress.start,
        )  # fmt: skip
    if not quiet:
        click.echo(
            f"evtxcorr: {result.rows} rows ({result.duplicates} duplicates dropped) to {output}", err=True
        )
        for warning in result.ledger.warnings:
            click.echo(f"  warning: {warning}", err=True)


@cli.group(context_settings=CONTEXT)
def forge() -> None:
    """Build realistic .evtx bundles for a scenario (test fixtures, demos, repros).

    \b
        evtxcorr forge list
        evtxcorr forge build shared-nic-sole-dc-path -o /tmp/bundle
        evtxcorr forge build my-scenario.yaml -o /tmp/b --layout tss --zip
        evtxcorr forge fixtures                # regenerate tests/fixtures/bundles
        evtxcorr forge big /tmp/big --size-mb 200
    """


@forge.command("list")
def forge_list() -> None:
    """List the shipped scenarios."""
    from evtxcorr.forge import list_scenarios, load_scenario

    for scenario_id in list_scenarios():
        scenario = load_scenario(scenario_id)
        click.echo(f"{scenario_id:32} {scenario.title}")


@forge.command("build")
@click.argument("scenario")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="Folder to write the bundle to."
)
@click.option("--seed", type=int, help="Random seed (same seed, same bytes).")
@click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply the background noise.")
@click.option(
    "--layout",
    type=click.Choice(["plain", "tss", "privatecloud"]),
    default="plain",
    show_default=True,
    help="File naming: plain HOST/System.evtx, TSS {HOST}_evt_System.evtx, PrivateCloud.DiagnosticInfo.",
)
@click.option("--zip", "as_zip", is_flag=True, help="Also pack the bundle as a .zip.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["evtx", *FORGE_EXPORTS]),
    default="evtx",
    show_default=True,
    help="Write each log as .evtx or as an export: xml (Event Viewer, -ja: Japanese rendering), "
    "xml-wevtutil, csv (PowerShell Export-Csv; -ja: ja-JP, UTF-16), csv-eventviewer[-ja], "
    "json (PowerShell 7), json-ps5 (Windows PowerShell, UTF-16).",
)
@click.option(
    "--tz",
    default="UTC",
    show_default=True,
    callback=_zone,
    help="Time zone of the exporting machine: local times in CSV and PowerShell 7 JSON.",
)
def forge_build(
    scenario: str, output: Path, seed: int | None, scale: float, layout: str, as_zip: bool, fmt: str, tz: str
) -> None:
    """Write the bundle of SCENARIO (a shipped id or a scenario YAML file).

    \b
        evtxcorr forge build shared-nic-sole-dc-path -o /tmp/b --format csv-eventviewer-ja --tz Asia/Tokyo
    """
    from evtxcorr.forge import forge_bundle

    written = forge_bundle(
        scenario, output, seed=seed, scale=scale, layout=layout, zip=as_zip, format=fmt, tz=tz
    )
    for path in written:
        click.echo(str(path))


@forge.command("fixtures")
@click.option("--dest", type=click.Path(path_type=Path), help="Folder (default: tests/fixtures/bundles).")
def forge_fixtures(dest: Path | None) -> None:
    """Regenerate the committed test fixtures, byte for byte (and their PROVENANCE.md table)."""
    from evtxcorr.forge import regenerate_fixtures
    from evtxcorr.forge.bundle import FIXTURE_DIR, update_provenance

    target = dest or FIXTURE_DIR
    paths = regenerate_fixtures(target)
    if target.resolve() == FIXTURE_DIR.resolve():
        update_provenance(target)
    click.echo(f"{len(paths)} files, {sum(p.stat().st_size for p in paths):,} bytes in {target}")


@forge.command("big")
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--size-mb", type=float, default=200, show_default=True, help="Approximate total size.")
@click.option(
    "--scenario",
    default="shared-nic-sole-dc-path",
    show_default=True,
    help="Scenario whose incidents are buried in the noise.",
)
def forge_big(output: Path, size_mb: float, scenario: str) -> None:
    """Write the large benchmark bundle (4 nodes, shared-NIC incidents in millions of noise records).

    Generated on demand, never committed: `evtxcorr forge big /tmp/big --size-mb 200`.
    """
    from evtxcorr.forge import forge_large_bundle

    _, stats = forge_large_bundle(output, size_mb, scenario=scenario)
    click.echo(
        f"{stats['files']} files, {stats['bytes']:,} bytes in {stats['seconds']:.1f} s "
        f"(noise scale {stats['scale']:.2f}) in {output}"
    )


@cli.group(context_settings=CONTEXT)
def rules() -> None:
    """Inspect and check the diagnosis rules (Sigma detections + cause files).

    \b
        evtxcorr rules list
        evtxcorr rules check rules/
        evtxcorr rules explain shared-nic-sole-dc-path
    """


@rules.command("list")
@click.option(
    "--rules", "rule_dirs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
def rules_list(rule_dirs: tuple[Path, ...]) -> None:
    """List causes and detections."""
    from evtxcorr.ruleset import load_ruleset, with_builtin

    ruleset = load_ruleset(with_builtin(rule_dirs))
    click.echo("causes (id, scope, kind):")
    for cause_id, cause in ruleset.causes.items():
        click.echo(f"  {cause_id:32} {cause.scope:7} {cause.kind:7} {cause.title.get('en', '')}")
    click.echo("detections:")
    for name, title in ruleset.detection_titles().items():
        click.echo(f"  {name:40} {title}")


@rules.command("check")
@click.argument("dirs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
def rules_check(dirs: tuple[Path, ...]) -> None:
    """Check rule folders, together with the built-in rules they build on; print file:line:col: problem
    for each issue. Exit code 1 when there is an error.

    \b
        evtxcorr rules check                 # the built-in rules
        evtxcorr rules check ./team-rules    # a team's folder, checked with the built-in rules
    """
    from evtxcorr.ruleset import check_ruleset, load_ruleset, with_builtin

    folders = with_builtin(dirs)
    issues = check_ruleset(folders)
    for issue in issues:
        click.echo(f"{issue} [{issue.severity}]")
    if not any(i.severity == "error" for i in issues):
        for note in load_ruleset(folders).replaced:
            click.echo(f"note: built-in {note}")
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        raise SystemExit(1)
    click.echo(f"ok: no errors ({len(issues)} warnings)" if issues else "ok")


@rules.command("explain")
@click.argument("cause")
@click.option("--lang", type=click.Choice(["en", "ja"]), default="en", show_default=True)
@click.option(
    "--rules", "rule_dirs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
def rules_explain(cause: str, lang: str, rule_dirs: tuple[Path, ...]) -> None:
    """Explain a cause: what it means, the evidence it weighs, the remedy and how to verify."""
    from evtxcorr.ruleset import load_ruleset, with_builtin

    ruleset = load_ruleset(with_builtin(rule_dirs))
    texts = ruleset.cause_texts()
    if cause not in texts:
        raise EvtxcorrError(f"no cause {cause!r}; known: {', '.join(texts)}")
    click.echo(_explain(texts[cause], lang))


def _explain(text, lang: str) -> str:  # type: ignore[no-untyped-def]
    lines = [text.title.get(lang, ""), "", text.explanation.get(lang, ""), ""]
    lines += [f"- {key}: {desc.get(lang, '')}" for key, desc in text.evidence.items()]
    lines += ["", text.remedy.get(lang, ""), ""] + [f"  {cmd}" for cmd in text.verify]
    return "\n".join(lines)


def main() -> None:
    """Console entry point."""
    # numpy's OpenBLAS starts a thread per core when imported, and they spin a while: CPU taken from the
    # parse workers (about 0.08 s a run). evtxcorr does no linear algebra; the commands import numpy later.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        cli(prog_name="evtxcorr")
    finally:
        # The process ends here: its last garbage collection need not walk every object still alive
        # (0.15 s after a 200 MB analysis). Exit handlers (temporary folders, child processes) still run.
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
