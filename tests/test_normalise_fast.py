"""The Rust backend's usual XML form is read by a regular expression (normalise._rust_form) instead of
lxml: every record it reads must come out exactly as lxml's reading gives it, and everything else must
be left to lxml (issue 12)."""

from __future__ import annotations

from pathlib import Path

import evtx
import pytest

from evtxcorr.parse import normalise
from evtxcorr.parse.normalise import xml_to_record


def _by_lxml(xml: str, written: str | None = None) -> dict | tuple:
    """xml_to_record without the fast path (its answer, or the error it raises)."""
    fast = normalise._rust_form
    normalise._rust_form = lambda _xml: None
    try:
        return xml_to_record(xml, written=written)
    except Exception as exc:  # noqa: BLE001 - compared as they are
        return ("error", type(exc).__name__, str(exc))
    finally:
        normalise._rust_form = fast


def _read(xml: str, written: str | None = None) -> dict | tuple:
    try:
        return xml_to_record(xml, written=written)
    except Exception as exc:  # noqa: BLE001 - compared as they are
        return ("error", type(exc).__name__, str(exc))


def _rust_xml(paths: list[Path], limit: int) -> list[tuple[str, str | None]]:
    out = []
    for path in paths:
        try:
            for item in evtx.PyEvtxParser(str(path), number_of_threads=1, indent=False).records():
                out.append((item["data"], item.get("timestamp") or None))
                if len(out) >= limit:
                    return out
        except Exception:  # noqa: BLE001, S112 - damaged corpus files: the records before the damage count
            continue
    return out


def test_fast_form_reads_every_record_as_lxml_does(corpus_dir: Path, bundles_dir: Path) -> None:
    logs = sorted(corpus_dir.rglob("*.evtx")) + sorted(bundles_dir.rglob("*.evtx"))[:40]
    records = _rust_xml(logs, 60_000)
    fast = 0
    for xml, written in records:
        record = normalise._rust_form(xml)
        if record is not None:
            fast += 1
            assert repr(record) == repr(_by_lxml(xml, written)), xml
    assert len(records) > 5000
    assert fast > len(records) * 0.8  # the form is the usual one (else the fast path is dead code)


_PLAIN = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>'
    '<Provider Name="Service Control Manager" Guid="555908D1-A6D7-4695-8E1E-26931D2012F4"></Provider>'
    '<EventID Qualifiers="16384">7036</EventID><Version>0</Version><Level>4</Level><Task>0</Task>'
    "<Opcode>0</Opcode><Keywords>0x8080000000000000</Keywords>"
    '<TimeCreated SystemTime="2026-09-16T06:59:44.123456Z"></TimeCreated><EventRecordID>42</EventRecordID>'
    '<Correlation></Correlation><Execution ProcessID="624" ThreadID="700"></Execution><Channel>System</Channel>'
    "<Computer>HV01.contoso.local</Computer><Security></Security></System><EventData>"
    '<Data Name="param1">VALUE</Data><Data Name="param2">running</Data><Binary>41 42</Binary></EventData></Event>'
)


@pytest.mark.parametrize(
    ("value", "fast"),
    [
        ("plain text", True),
        ("tab\tand\nnewline", True),
        ("caf\u00e9 \U0001f600", True),
        ("a &amp; b", False),  # a reference: lxml unescapes it
        ("&#x41;", False),
        ("cr\r\nlf", False),  # line ends normalised by the XML parser
        ("a ]]> b", False),  # not well-formed
        ("bell\x07", False),  # not an XML character: lxml refuses, the retry marks it
        ("<b>bold</b>", False),  # mixed content
        ("", True),
    ],
)
def test_values_the_fast_form_must_not_read_go_to_lxml(value: str, fast: bool) -> None:
    xml = _PLAIN.replace("VALUE", value)
    assert (normalise._rust_form(xml) is not None) == fast
    assert repr(_read(xml)) == repr(_by_lxml(xml))


@pytest.mark.parametrize(
    "change",
    [
        ('ProcessID="624"', 'ProcessID="0x270"'),  # hex: _int_or_none reads it, the fast form does not
        ('SystemTime="2026-09-16T06:59:44.123456Z"', 'SystemTime=" "'),  # no time: the header's is used
        ('Name="param1"', 'Name="a\tb"'),  # attribute whitespace is normalised by the parser
        ("<Version>0</Version>", ""),
        ("<Binary>41 42</Binary>", "<Binary> 4 1\n42 </Binary>"),
        ('<EventID Qualifiers="16384">7036</EventID>', "<EventID>x</EventID>"),
    ],
)
def test_unusual_system_values_read_the_same(change: tuple[str, str]) -> None:
    xml = _PLAIN.replace("VALUE", "v").replace(*change)
    written = "2026-09-16T07:00:00.000000Z"
    assert repr(_read(xml, written)) == repr(_by_lxml(xml, written))
