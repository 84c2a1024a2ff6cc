"""The command line: thin commands over the library. The only module that imports click.

Library errors (EvtxcorrError) and OS errors become one line on stderr and exit code 1 (2 for a
bad -o, found before any work); SIGINT and SIGTERM exit 130 and 143 after cleaning up (signals.py);
--debug shows tracebacks. Everything printed from the inputs goes through terminal.safe().
"""

from __future__ import annotations

import logging
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
) -> None:
    """Analyse a log bundle and write the root-cause report.

    PATHS are .evtx files, folders (searched recursively) and archives: .zip, .7z, .cab, .tar.gz/.tgz,
    .gz (nested too; extracted safely, within limits for the whole run).
    Event logs are recognised by content, not by name; every file is accounted for in the report
    (analysed, partial or skipped, with the reason). Records exported twice count once.

    \b
    Examples:
        evtxcorr analyze case-1234.zip -o report/
        evtxcorr analyze HV01/System.evtx HV02/System.evtx --format json -o out.json
        evtxcorr analyze bundle/ --lang ja --tz Asia/Tokyo -o report.html
        evtxcorr analyze HV01/ HV03/ --nodes HV01,HV02,HV03 -o report/   # HV02's logs are missing

    Exit code 0 when the analysis ran, whether or not a cause was found; 1 when the input is
    unusable (a path that does not exist, no event log anywhere in it: the error says why) or the
    report cannot be written; 2 for a bad option (a bad -o is found before any work); 130 and 143
    when stopped by Ctrl-C or SIGTERM (temporary files removed, no report written).
    """
    from evtxcorr.analyze import Options
    from evtxcorr.analyze import analyze as run_analysis
    from evtxcorr.output import plan_outputs, write_reports
    from evtxcorr.progress import Progress
    from evtxcorr.render import render
    from evtxcorr.summary import nothing_usable, summary_lines

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
    )
    with Progress(enabled=not quiet) as progress:
        report = run_analysis(list(paths), options, on_sources=progress.start, progress=progress.update)
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
    from evtxcorr.correlate.clusters import node_key

    names = tuple(part.strip() for part in (value or "").split(",") if part.strip())
    bad = [name for name in names if node_key(name) is None]
    if bad:
        raise click.BadParameter(f"not a host name: {', '.join(map(repr, bad))} (e.g. HV01,HV02)")
    return names


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
def forge_build(
    scenario: str, output: Path, seed: int | None, scale: float, layout: str, as_zip: bool
) -> None:
    """Write the bundle of SCENARIO (a shipped id or a scenario YAML file)."""
    from evtxcorr.forge import forge_bundle

    for path in forge_bundle(scenario, output, seed=seed, scale=scale, layout=layout, zip=as_zip):
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
    texts = ruleset.cause_texts()
    click.echo("causes:")
    for cause_id, text in texts.items():
        click.echo(f"  {cause_id:32} {text.title.get('en', '')}")
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
    from evtxcorr.ruleset import check_ruleset, with_builtin

    issues = check_ruleset(with_builtin(dirs))
    for issue in issues:
        click.echo(f"{issue} [{issue.severity}]")
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
    cli(prog_name="evtxcorr")


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
