"""Our Sigma evaluator against an independent one: pySigma's SQLite backend converts each random rule to
SQL, SQLite runs it over the same random table, and both must match the same rows.

Semantic differences we keep on purpose, and how this test encodes them (rules/README.md says the same):
- an empty value is absent for evtxcorr (only `null` matches it, not '' nor '*': an event log has no
  NULL, and a Data element left empty says nothing), so empty strings are loaded into SQLite as NULL;
- strings compare case-insensitively for any script (Python's lower()); SQLite's LIKE and NOCASE fold
  ASCII only, so the table's texts are ASCII;
- `re` is Python's `re.search` on both sides (SQLite's REGEXP is registered as exactly that).
"""

from __future__ import annotations

import re
import sqlite3

import synthetic_events as se
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection

from evtxcorr.ruleset import Issue, load_ruleset
from evtxcorr.ruleset.sigma import FrameView, detection_from_doc, evaluate
from evtxcorr.ruleset.yamlload import load_text

SETTINGS = load_ruleset().settings
PROVIDERS = ("NETLOGON", "netlogon", "Tcpip", "Microsoft-Windows-FailoverClustering")
EVENT_IDS = (27, 1228, 5719, 4202)
ALPHABET = "ab %_.-"  # LIKE's own wildcards appear as literal text in the table
PARAMS = ("param1", "param2", "param3")

texts = st.text(alphabet=ALPHABET, max_size=4)
rows = st.lists(
    st.tuples(
        st.sampled_from(PROVIDERS),
        st.sampled_from(EVENT_IDS),
        st.lists(texts, max_size=3),  # payload: 0 to 3 values, so paramN may be missing
        st.sampled_from(("", "5E0000C0", "6d0000c0")),
    ),
    min_size=1,
    max_size=25,
)
sigma_texts = st.text(alphabet="ab %_.*?", min_size=0, max_size=3)  # * and ? are Sigma wildcards
regexes = st.sampled_from(("a", "^a", "b$", "a.b", "A", "[ab] ", "^$", r"\.", "a|%"))


@st.composite
def items(draw: st.DrawFn) -> str:
    """One `field|modifiers: value` line of a selection."""
    field = draw(st.sampled_from(("Provider_Name", "EventID", "Binary", *PARAMS)))
    if field == "EventID":
        return f"EventID: {draw(st.sampled_from(EVENT_IDS))}"
    if field == "Provider_Name":
        return f"Provider_Name: '{draw(st.sampled_from(PROVIDERS))}'"
    if field == "Binary":
        return f"Binary: {draw(st.sampled_from(('5E0000C0', '6D0000C0', 'null')))}"
    modifier = draw(st.sampled_from(("", "|contains", "|startswith", "|endswith", "|re", "|re|i", "null")))
    if modifier == "null":
        return f"{field}: null"
    if modifier.startswith("|re"):
        return f"{field}{modifier}: '{draw(regexes)}'"
    values = draw(st.lists(sigma_texts, min_size=1, max_size=2))
    every = "|all" if len(values) > 1 and draw(st.booleans()) else ""
    listed = ", ".join(f"'{v}'" for v in values)
    return f"{field}{modifier}{every}: [{listed}]"


CONDITIONS = (
    "sel1",
    "sel1 and not sel2",
    "1 of sel*",
    "all of them",
    "sel1 or (sel2 and not sel3)",
    "not sel1",
    "not (sel1 or sel2)",
)


@st.composite
def rules(draw: st.DrawFn) -> str:
    lines = []
    for number in (1, 2, 3):
        selection = draw(st.lists(items(), min_size=1, max_size=2, unique_by=lambda s: s.split(":")[0]))
        lines.append(f"  sel{number}:\n" + "".join(f"    {item}\n" for item in selection))
    lines.append(f"  condition: {draw(st.sampled_from(CONDITIONS))}\n")
    return (
        "title: differential\nname: differential\nid: 0f3b2a1c-7e52-4e0d-9d5a-2b8c6e1f7a90\nstatus: test\n"
        "logsource:\n  product: windows\n  service: system\ndetection:\n" + "".join(lines)
    )


def _ours(rule_text: str, table_rows: list[dict]) -> set[int]:
    issues: list[Issue] = []
    detection = detection_from_doc(load_text(rule_text, "differential.yml"), SETTINGS, issues)
    assert detection is not None, [str(i) for i in issues]
    frame = se.frame(table_rows)
    return {int(p) for p in evaluate(FrameView(frame, SETTINGS), detection)}


def _regexp(pattern: str, value: str | None) -> bool:
    return value is not None and re.search(pattern, value) is not None


def _sqlite(rule_text: str, table_rows: list[dict]) -> set[int]:
    query = sqliteBackend(collate_nocase=True).convert(SigmaCollection.from_yaml(rule_text))[0]
    db = sqlite3.connect(":memory:")
    db.create_function("REGEXP", 2, _regexp, deterministic=True)
    db.execute(
        "CREATE TABLE logs (Provider_Name TEXT, EventID INTEGER, Binary TEXT, "
        "param1 TEXT, param2 TEXT, param3 TEXT)"
    )
    for position, row in enumerate(table_rows):
        data = list(row["data"]) + [None] * 3
        values = [row["provider"], row["event_id"], row["binary"], *data[:3]]
        db.execute(
            "INSERT INTO logs (rowid, Provider_Name, EventID, Binary, param1, param2, param3) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [position + 1, *(None if v == "" else v for v in values)],
        )
    return {rowid - 1 for (rowid,) in db.execute(query.replace("SELECT *", "SELECT rowid", 1))}


def _table(drawn: list[tuple]) -> list[dict]:
    se._record_ids.clear()
    return [
        se.row("HV01", float(i), provider, event_id, data=tuple(data), binary=binary)
        for i, (provider, event_id, data, binary) in enumerate(drawn)
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_text=rules(), drawn=rows)
def test_evaluator_matches_what_pysigma_sqlite_matches(rule_text: str, drawn: list[tuple]) -> None:
    table_rows = _table(drawn)
    assert _ours(rule_text, table_rows) == _sqlite(rule_text, table_rows), rule_text


def test_the_differential_harness_can_tell_rules_apart() -> None:
    """Guard against a harness that always agrees: two different rules give different rows."""
    table_rows = _table([("NETLOGON", 5719, ["a"], ""), ("Tcpip", 4202, ["b"], "")])
    header = (
        "title: t\nname: t\nid: 0f3b2a1c-7e52-4e0d-9d5a-2b8c6e1f7a91\nstatus: test\n"
        "logsource:\n  product: windows\n  service: system\ndetection:\n  sel1:\n"
    )
    first = header + "    EventID: 5719\n  condition: sel1\n"
    second = header + "    param1|contains: b\n  condition: sel1\n"
    assert _ours(first, table_rows) == _sqlite(first, table_rows) == {0}
    assert _ours(second, table_rows) == _sqlite(second, table_rows) == {1}
