"""Cross-file checks over a loaded ruleset: one small function per property, registered by name.

Schema and Sigma problems are found while loading (model.py, sigma.py); these look at how the
pieces fit together. `rules check` runs every entry of CHECKS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from evtxcorr.errors import Location
from evtxcorr.ruleset.model import Cause, Issue, Ruleset

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _cause_loc(cause: Cause, *keypath: str | int) -> Location:
    return cause.doc.loc(*keypath) if cause.doc else Location(cause.path)


def unknown_detections(ruleset: Ruleset) -> Iterator[Issue]:
    """Every anchor and evidence item names a loaded detection."""
    known = ruleset.detections
    for cause in ruleset.causes.values():
        for index, name in enumerate(cause.anchors):
            if name not in known:
                yield Issue(
                    "error",
                    _cause_loc(cause, "anchors", index),
                    f"anchor '{name}' is not a known detection (the `name` of a Sigma rule)",
                    "references",
                )
        for index, spec in enumerate(cause.evidence):
            if spec.detection and spec.detection not in known:
                yield Issue(
                    "error",
                    _cause_loc(cause, "evidence", index, "detection"),
                    f"evidence '{spec.key}' names unknown detection '{spec.detection}'",
                    "references",
                )


def duplicate_evidence_keys(ruleset: Ruleset) -> Iterator[Issue]:
    for cause in ruleset.causes.values():
        seen: set[str] = set()
        for index, spec in enumerate(cause.evidence):
            if spec.key in seen:
                yield Issue(
                    "error",
                    _cause_loc(cause, "evidence", index, "key"),
                    f"duplicate evidence key '{spec.key}'",
                    "evidence",
                )
            seen.add(spec.key)


def required_evidence_is_presence(ruleset: Ruleset) -> Iterator[Issue]:
    """A finding must rest on something seen: required items expect presence (absence goes in a
    supporting item paired with a refuting one)."""
    for cause in ruleset.causes.values():
        for index, spec in enumerate(cause.evidence):
            if spec.role == "required" and spec.expect != "present":
                yield Issue(
                    "error",
                    _cause_loc(cause, "evidence", index, "expect"),
                    f"required evidence "
                    f"'{spec.key}' must expect 'present' (make it supporting, and add a refuting "
                    "item for the presence)",
                    "evidence",
                )


def windows_reach_past_episode(ruleset: Ruleset) -> Iterator[Issue]:
    """Evidence is looked up over the whole signal table, so no window is too long for an incident;
    but a `before` item looking for one of its cause's own anchors is found only before the episode,
    and anchors closer than `episode_gap_s` are part of it: such an item must reach further back."""
    gap = ruleset.settings.episode_gap_s
    for cause in ruleset.causes.values():
        for index, spec in enumerate(cause.evidence):
            if spec.relation == "before" and spec.detection in cause.anchors and spec.within_s <= gap:
                yield Issue(
                    "warning",
                    _cause_loc(cause, "evidence", index, "within_s"),
                    f"'{spec.key}' looks {spec.within_s:g} s before the episode for one of its own "
                    f"anchors, which within episode_gap_s ({gap:g} s) belong to the episode: never present",
                    "windows",
                )


def japanese_is_japanese(ruleset: Ruleset) -> Iterator[Issue]:
    for cause in ruleset.causes.values():
        for key in ("title", "summary", "explanation", "remedy"):
            text = getattr(cause, key).get("ja", "")
            if text and not JAPANESE.search(text):
                yield Issue(
                    "warning", _cause_loc(cause, key, "ja"), f"{key}.ja has no Japanese text", "language"
                )


def names_follow_files(ruleset: Ruleset) -> Iterator[Issue]:
    for name, detection in ruleset.detections.items():
        if Path(detection.path).stem != name:
            yield Issue(
                "warning",
                Location(detection.path),
                f"detection name '{name}' differs from its file name",
                "names",
            )
    for cause_id, cause in ruleset.causes.items():
        if Path(cause.path).stem != cause_id:
            yield Issue(
                "warning",
                _cause_loc(cause, "id"),
                f"cause id '{cause_id}' differs from its file name",
                "names",
            )


def node_name_detections(ruleset: Ruleset) -> Iterator[Issue]:
    for detection, _field in ruleset.settings.node_names:
        if detection not in ruleset.detections:
            yield Issue(
                "error",
                Location("settings.yaml"),
                f"node_names: unknown detection '{detection}'",
                "references",
            )


CHECKS: dict[str, Callable[[Ruleset], Iterator[Issue]]] = {
    "references": unknown_detections,
    "evidence-keys": duplicate_evidence_keys,
    "required-is-presence": required_evidence_is_presence,
    "windows": windows_reach_past_episode,
    "language": japanese_is_japanese,
    "names": names_follow_files,
    "node-names": node_name_detections,
}


def run_checks(ruleset: Ruleset) -> list[Issue]:
    return [issue for check in CHECKS.values() for issue in check(ruleset)]
