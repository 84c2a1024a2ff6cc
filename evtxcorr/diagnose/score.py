"""Confidence from evidence: pure functions, no pandas.

Each evidence item ends in one of three outcomes: its expectation held (True), failed (False) or
cannot be judged because a log that could show it is missing (None). What that is worth:

| role       | held      | failed                | unknown |
|------------|-----------|-----------------------|---------|
| required   | +weight   | VETO (-1.0: rules out) | 0       |
| supporting | +weight   | 0                     | 0       |
| refuting   | -weight   | 0                     | 0       |

confidence = clamp(prior + sum of contributions, 0, 1). Unknown evidence adds nothing.

The range [low, high] says what the missing logs could change: each host whose log cannot decide an
item is taken as showing what counts most against the cause (low), then most for it (high). A
missing log can hide evidence against a cause as well as for it, so `confidence` alone may rise when
a log is removed; `low` never does.
"""

from __future__ import annotations

from collections.abc import Iterable

VETO = -1.0


def contribution(role: str, weight: float, held: bool | None) -> float:
    if held is None:
        return 0.0
    if role == "required":
        return weight if held else VETO
    if role == "supporting":
        return weight if held else 0.0
    return -weight if held else 0.0  # refuting: the evidence against the cause was seen


def confidence(prior: float, contributions: Iterable[float]) -> float:
    return round(min(1.0, max(0.0, prior + sum(contributions))), 4)


def host_states_outcome(states: list[str], expect: str, nodes: str) -> bool | None:
    """Combine per-host states ('present' | 'absent' | 'unknown') into the item's outcome.

    expect present + nodes any: seen on some host. expect present + nodes every: seen on all hosts.
    expect absent: seen on none (nodes is irrelevant). No host in scope at all: unknown.
    """
    if not states:
        return None
    if expect == "absent":
        if "present" in states:
            return False
        return None if "unknown" in states else True
    if nodes == "every":
        if "absent" in states:
            return False
        return None if "unknown" in states else True
    if "present" in states:
        return True
    return None if "unknown" in states else False


def possible_outcomes(states: list[str], expect: str, nodes: str) -> set[bool | None]:
    """Every outcome the item could have once the 'unknown' hosts are known: each unknown host taken as
    present, then as absent (outcomes are monotone in presence, so the two extremes bound them). With
    no host in scope at all, either outcome is possible."""
    if not states:
        return {True, False}
    if "unknown" not in states:
        return {host_states_outcome(states, expect, nodes)}
    return {
        host_states_outcome([s if s != "unknown" else guess for s in states], expect, nodes)
        for guess in ("present", "absent")
    }


def contribution_range(role: str, weight: float, outcomes: set[bool | None]) -> tuple[float, float]:
    """Lowest and highest contribution over the possible outcomes (unknown: the item adds nothing)."""
    values = [contribution(role, weight, held) for held in outcomes]
    return min(values), max(values)


def status_of(held: bool | None, expect: str) -> str:
    """Evidence.status: what was observed ('present' / 'absent' / 'unknown')."""
    if held is None:
        return "unknown"
    observed_as_expected = expect if held else ("absent" if expect == "present" else "present")
    return observed_as_expected
