"""Rules as data: load Sigma detections and cause files, check them, and match detections to rows.

A rules folder holds `sigma/*.yml` (Sigma rules, one event signature each), `causes/*.yaml` (our
diagnosis schema, see rules/README.md) and optionally `settings.yaml`. Settings always start from the
built-in file; each folder's settings.yaml overrides the keys it sets. Names must be unique across
folders, so a team's folder adds to the built-in rules and never silently replaces one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evtxcorr.errors import Location, RuleError
from evtxcorr.resources import data_dir
from evtxcorr.ruleset import correlation, sigma
from evtxcorr.ruleset.checks import run_checks
from evtxcorr.ruleset.model import (
    Cause,
    Detection,
    EvidenceSpec,
    Issue,
    Ruleset,
    Settings,
    cause_from_doc,
    settings_overrides,
)
from evtxcorr.ruleset.yamlload import Doc, load_file

if TYPE_CHECKING:  # matching takes a frame; loading rules never imports pandas
    import pandas as pd

__all__ = [
    "Cause",
    "Detection",
    "EvidenceSpec",
    "Issue",
    "Ruleset",
    "Settings",
    "builtin_dir",
    "check_ruleset",
    "load_ruleset",
    "match",
    "match_unknown",
]

SIGMA_GLOBS = ("sigma/*.yml", "sigma/*.yaml")
CAUSE_GLOBS = ("causes/*.yaml", "causes/*.yml")


def builtin_dir() -> Path:
    """The rules shipped with evtxcorr."""
    return data_dir("rules")


def with_builtin(dirs: Sequence[Path] = ()) -> list[Path]:
    """The built-in rules folder followed by a team's folders (the built-in one is not repeated)."""
    builtin = builtin_dir().resolve()
    return [builtin, *(Path(d) for d in dirs if Path(d).resolve() != builtin)]


def _files(folder: Path, globs: Sequence[str]) -> list[Path]:
    return sorted({path for pattern in globs for path in folder.glob(pattern)})


def _doc(path: Path, issues: list[Issue]) -> Doc | None:
    try:
        return load_file(path)
    except RuleError as exc:
        issues.append(Issue("error", exc.location or Location(str(path)), exc.message, "yaml"))
        return None


def _settings(dirs: Sequence[Path], issues: list[Issue]) -> Settings | None:
    values: dict[str, object] = {}
    builtin = builtin_dir().resolve()
    folders = [builtin, *(d for d in dirs if d.resolve() != builtin)]
    for folder in folders:
        path = folder / "settings.yaml"
        if path.is_file() and (doc := _doc(path, issues)) is not None:
            values.update(settings_overrides(doc, issues))
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except TypeError as exc:
        issues.append(Issue("error", Location(str(builtin / "settings.yaml")), f"incomplete settings: {exc}"))
        return None


@dataclass(frozen=True)
class _Entry:
    """What a name (detection) or id (cause) is bound to while folders load in order."""

    item: Detection | Cause
    doc: Doc
    path: str


def _bind(
    table: dict[str, _Entry],
    name: str,
    entry: _Entry,
    what: str,
    key: str,
    issues: list[Issue],
    replaced: list[str],
) -> bool:
    """Bind `name` to `entry` unless an earlier folder bound it: the same content is no conflict (a
    checkout's rules/ next to the installed copy), `overrides: <name>` replaces it on purpose, and
    anything else is an error. True when the entry now holds the name."""
    earlier = table.get(name)
    overrides = entry.doc.data.get("overrides") if isinstance(entry.doc.data, dict) else None
    if overrides is not None and overrides != name:
        issues.append(
            Issue(
                "error",
                entry.doc.loc("overrides"),
                f"overrides '{overrides}' must name this {what}'s own {key} '{name}'",
                "names",
            )
        )
        return False
    if earlier is None:
        if overrides is not None:
            issues.append(
                Issue(
                    "error",
                    entry.doc.loc("overrides"),
                    f"overrides '{name}', but no earlier rules folder defines it",
                    "names",
                )
            )
            return False
        table[name] = entry
        return True
    if _same_content(earlier.doc.data, entry.doc.data):
        return False
    if overrides == name:
        table[name] = entry
        replaced.append(f"{what} '{name}' of {earlier.path} is replaced by {entry.path} (overrides: {name})")
        return True
    issues.append(
        Issue(
            "error",
            entry.doc.loc(key),
            f"{what} {key} '{name}' is already used by {earlier.path} (add `overrides: {name}` to replace it)",
            "names",
        )
    )
    return False


def _same_content(first: object, second: object) -> bool:
    """Equal rule documents, ignoring an `overrides` key."""
    strip = (lambda d: {k: v for k, v in d.items() if k != "overrides"}) if isinstance(first, dict) else None
    if strip and isinstance(second, dict):
        return strip(first) == strip(second)
    return first == second


def _collect(dirs: Sequence[Path]) -> tuple[Ruleset | None, list[Issue]]:
    """Load every file of every folder, collecting all issues; None if settings are unusable."""
    issues: list[Issue] = []
    for folder in dirs:
        if not folder.is_dir():
            issues.append(Issue("error", Location(str(folder)), "rules folder does not exist", "files"))
    settings = _settings(dirs, issues)
    if settings is None:
        return None, issues
    detections: dict[str, _Entry] = {}
    causes: dict[str, _Entry] = {}
    replaced: list[str] = []
    for folder in dirs:
        for path in _files(folder, SIGMA_GLOBS):
            doc = _doc(path, issues)
            detection = sigma.detection_from_doc(doc, settings, issues) if doc else None
            if doc and detection:
                entry = _Entry(detection, doc, detection.path)
                _bind(detections, detection.name, entry, "detection", "name", issues, replaced)
        for path in _files(folder, CAUSE_GLOBS):
            doc = _doc(path, issues)
            if doc is None:
                continue
            cause = cause_from_doc(doc, issues)
            if cause.id:
                _bind(causes, cause.id, _Entry(cause, doc, cause.path), "cause", "id", issues, replaced)
    resolved = _resolve_correlations(detections, issues)
    ruleset = Ruleset(
        settings,
        resolved,
        {name: e.item for name, e in causes.items()},  # type: ignore[misc]
        tuple(dirs),
        tuple(replaced),
    )
    issues.extend(run_checks(ruleset))
    return ruleset, issues


def _resolve_correlations(entries: dict[str, _Entry], issues: list[Issue]) -> dict[str, Detection]:
    """Detections by name, correlations last in dependency order, their references resolved from
    `name` or `id` to names and their channels the union of what they correlate."""
    plain = {name: e.item for name, e in entries.items() if e.item.kind == "rule"}  # type: ignore[union-attr]
    by_id = {d.id: name for name, d in plain.items()}  # type: ignore[union-attr]
    pending = {name: e for name, e in entries.items() if e.item.kind == "correlation"}  # type: ignore[union-attr]
    by_id.update({e.item.id: name for name, e in pending.items() if e.item.id})  # type: ignore[union-attr]
    done: dict[str, Detection] = dict(plain)  # type: ignore[arg-type]
    while pending:
        progressed = False
        for name, entry in list(pending.items()):
            item: Detection = entry.item  # type: ignore[assignment]
            names = [ref if ref in entries else by_id.get(ref, ref) for ref in item.references]
            unknown = [(i, ref) for i, ref in enumerate(names) if ref not in entries]
            for index, ref in unknown:
                where = entry.doc.loc("correlation", "rules", index)
                issues.append(
                    Issue(
                        "error",
                        where,
                        f"correlation rule '{ref}' is not a known rule name or id",
                        "references",
                    )
                )
            if unknown:
                del pending[name]
                continue
            if all(ref in done for ref in names):
                channels = tuple(dict.fromkeys(c for ref in names for c in done[ref].channels))
                done[name] = replace(item, references=tuple(names), channels=channels)
                del pending[name]
                progressed = True
        if not progressed and pending:
            for name, entry in pending.items():
                issues.append(
                    Issue(
                        "error",
                        entry.doc.loc("correlation", "rules"),
                        f"correlation '{name}' refers to itself through its rules",
                        "references",
                    )
                )
            break
    return done


def _dirs(dirs: Sequence[Path] | None) -> list[Path]:
    return [builtin_dir()] if dirs is None else [Path(d) for d in dirs]


def check_ruleset(dirs: Sequence[Path] | None = None) -> list[Issue]:
    """Every problem in the given rule folders (default: the built-in rules), errors and warnings."""
    return _collect(_dirs(dirs))[1]


def load_ruleset(dirs: Sequence[Path] | None = None) -> Ruleset:
    """Load rule folders in order (default: the built-in rules); RuleError on the first error.

    To add a team's folder to the built-in rules pass both: `load_ruleset([builtin_dir(), team])`.
    """
    ruleset, issues = _collect(_dirs(dirs))
    errors = [issue for issue in issues if issue.severity == "error"]
    if errors or ruleset is None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more; run `evtxcorr rules check`)" if len(errors) > 1 else ""
        raise RuleError(first.message + more, first.location)
    return ruleset


Signals = dict[int, tuple[str, ...]]  # row index -> names of the detections it matched


def match(frame: pd.DataFrame, ruleset: Ruleset) -> Signals:
    """Row index -> names of the detections it surely matched, for rows matching at least one."""
    return match_unknown(frame, ruleset)[0]


def match_unknown(frame: pd.DataFrame, ruleset: Ruleset) -> tuple[Signals, Signals]:
    """(row -> detections it surely matched, row -> detections it may match but whose payload the input
    did not carry: an Event Viewer CSV row with the right provider and event id; sigma.evaluate_unknown).

    A correlation is sure where it holds both with the sure matches alone and with the possible ones
    added, and possible where it holds with only one of them (exact for counts of at least N and for
    temporal rules, which more events can only help).
    """
    view = sigma.FrameView(frame, ruleset.settings)
    surely: dict[str, np.ndarray] = {}
    maybe: dict[str, np.ndarray] = {}
    for name, detection in ruleset.detections.items():  # correlations come after what they correlate
        try:
            if detection.kind == "correlation":
                surely[name], maybe[name] = _correlate_unknown(view, detection, surely, maybe)
            else:
                surely[name], maybe[name] = sigma.evaluate_unknown(view, detection)
        except (TypeError, ValueError, KeyError) as exc:
            raise RuleError(f"cannot evaluate detection '{name}': {exc}", Location(detection.path)) from exc
    return _by_row(frame, surely), _by_row(frame, maybe)


def _correlate_unknown(
    view: sigma.FrameView,
    detection: Detection,
    surely: dict[str, np.ndarray],
    maybe: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    sure_only = correlation.evaluate_correlation(view, detection, surely)
    if not any(len(maybe.get(ref, ())) for ref in detection.references):
        return np.asarray(sure_only, dtype=np.int64), np.zeros(0, dtype=np.int64)
    every = {ref: np.union1d(surely.get(ref, ()), maybe.get(ref, ())).astype(np.int64) for ref in surely}
    with_maybe = correlation.evaluate_correlation(view, detection, every)
    both = np.intersect1d(sure_only, with_maybe)
    return both, np.setdiff1d(np.union1d(sure_only, with_maybe), both)


def _by_row(frame: pd.DataFrame, positions: dict[str, np.ndarray]) -> Signals:
    index = frame.index.to_numpy()
    hits: dict[int, list[str]] = {}
    for name, found in positions.items():
        for label in index[np.asarray(found, dtype=np.int64)].tolist():
            hits.setdefault(int(label), []).append(name)
    return {label: tuple(names) for label, names in sorted(hits.items())}
