"""What a batch remembers of each case, so that a rerun (after a crash, Ctrl-C or new bundles) only
does what is left: OUTDIR/<case>/evtxcorr-case.json, written atomically once the case's reports are.

A case is reused when its inputs (paths, sizes, modification times), the settings that shape a report
(evtxcorr version, language, zone, --source-tz, parser, rule folders and their files) are unchanged,
it ran to the end (ok or skipped), and every report asked for is still there as written. Anything else
is redone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evtxcorr import __version__
from evtxcorr.batch.cases import Case, fingerprint
from evtxcorr.output import REPORT_STEM, SUFFIXES, write_atomic

STATE_FILE = "evtxcorr-case.json"
ERROR_FILE = "evtxcorr-error.log"
# The keys of a case in summary.json, in order.
ROW_KEYS = ("case", "path", "status", "reason", "findings", "records", "seconds", "worker")
REUSABLE = ("ok", "skipped")


def settings_key(
    *, lang: str, tz: str, backend: str, rule_dirs: Sequence[Path], source_tz: str | None = None
) -> dict[str, Any]:
    """Everything besides the inputs that changes what a case's reports say."""
    rules = [d.resolve() for d in rule_dirs]
    return {
        "version": __version__,
        "lang": lang,
        "tz": tz,
        "source_tz": source_tz,
        "parser": backend,
        "rules": [str(d) for d in rules],
        "rules_files": fingerprint(rules)["sha256"],
    }


def utf8(text: str) -> str:
    """`text` writable as UTF-8: a file name that is not UTF-8 (a Shift_JIS folder name, say) reaches
    Python as lone surrogates, written here as `\\udc8c` (in JSON text, the escape of that very
    character)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def report_name(fmt: str) -> str:
    return f"{REPORT_STEM}{SUFFIXES[fmt]}"


def load(case_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((case_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("row"), dict) else None


def reusable(
    state: Mapping[str, Any] | None,
    case_dir: Path,
    *,
    inputs: Mapping[str, Any],
    settings: Mapping[str, Any],
    formats: Sequence[str],
) -> bool:
    """True when the case need not run again (see the module docstring)."""
    if not state or state.get("inputs") != inputs or state.get("settings") != settings:
        return False
    if state["row"].get("status") not in REUSABLE:
        return False
    if state["row"]["status"] == "skipped":
        return True
    written = state.get("reports") or {}
    return all(fmt in written and _same_size(case_dir / report_name(fmt), written[fmt]) for fmt in formats)


def _same_size(path: Path, size: object) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def clear(case_dir: Path) -> None:
    """Forget a case: its state first (so nothing claims the reports are complete), then its files."""
    for name in (STATE_FILE, ERROR_FILE, *(report_name(fmt) for fmt in SUFFIXES)):
        (case_dir / name).unlink(missing_ok=True)


def save(
    case_dir: Path,
    row: Mapping[str, Any],
    result: Mapping[str, Any],
    *,
    inputs: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> None:
    """Write the case's reports, then its state (each atomically): a case interrupted in between has
    no state and is redone by the next run."""
    clear(case_dir)
    case_dir.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for fmt, text in (result.get("reports") or {}).items():
        write_atomic(case_dir / report_name(fmt), utf8(text))
        sizes[fmt] = (case_dir / report_name(fmt)).stat().st_size
    if result.get("detail"):
        write_atomic(case_dir / ERROR_FILE, utf8(str(result["detail"])))
    state = {
        "row": dict(row),
        "inputs": dict(inputs),
        "settings": dict(settings),
        "reports": sizes,
        "titles": result.get("titles") or {},
        "finished": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    write_atomic(case_dir / STATE_FILE, json.dumps(state, indent=1) + "\n")  # ASCII, lossless


def make_row(case: Case, result: Mapping[str, Any]) -> dict[str, Any]:
    """The case as summary.json lists it."""
    return {
        "case": case.name,
        "path": str(case.source),
        "status": result["status"],
        "reason": result.get("reason"),
        "findings": list(result.get("findings") or []),
        "records": int(result.get("records") or 0),
        "seconds": result.get("seconds"),
        "worker": result.get("worker"),
    }
