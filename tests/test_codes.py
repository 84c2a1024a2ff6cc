"""codes.py and data/codes.yaml: canonical forms, generic extraction, names in two languages."""

from __future__ import annotations

import re

import pytest
import yaml

from evtxcorr.codes import CODES_FILE, canonical, describe, extract_codes

FC = "Microsoft-Windows-FailoverClustering"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("-1073741717", "0xC000006B"),
        (-1073741717, "0xC000006B"),
        ("%%1311", "0x0000051F"),
        ("C000005E", "0xC000005E"),
        ("0xc000005e", "0xC000005E"),
        (1326, "0x0000052E"),
        ("0x80090311", "0x80090311"),
        ("not a code", None),
        ("0x1234567890", None),
    ],
)
def test_canonical(given: str | int, expected: str | None) -> None:
    assert canonical(given) == expected


@pytest.mark.parametrize(
    ("provider", "event_id", "data", "binary", "expected"),
    [
        ("NETLOGON", 5719, ("CONTOSO", "%%1311"), "5E0000C0", ("0xC000005E", "0x0000051F")),
        ("NETLOGON", 5719, ("CONTOSO", "%%1326"), "6D0000C0", ("0xC000006D", "0x0000052E")),
        (FC, 1228, ("Cluster Name", "Unable to obtain a logon token", "-1073741717"), "", ("0xC000006B",)),
        (FC, 1228, ("Cluster Name", "reason", "1326"), "", ("0x0000052E",)),
        (FC, 1206, ("Cluster Name", "contoso.local", "8240", "CLU$"), "", ("0x00002030",)),
        ("Microsoft-Windows-Time-Service", 129, ("The entry is not found. (0x800706E1)", "15"), "",
         ("0x800706E1",)),
        ("Microsoft-Windows-Hyper-V-High-Availability", 21502,
         ("vm", "text (0x80090311). more (0x80090311)."), "", ("0x80090311",)),
        # a decimal outside a declared position is not a code; an 8-byte binary is not an NTSTATUS
        ("Other", 1, ("1326", "0x0000000000000123"), "0000000000000000", ()),
    ],
)  # fmt: skip
def test_extract_codes(provider, event_id, data, binary, expected) -> None:
    assert extract_codes(provider, event_id, data, binary) == expected


def test_describe_in_both_languages() -> None:
    assert describe("0xC000006B") == (
        "STATUS_ILL_FORMED_PASSWORD",
        "The value provided for the new password contains values that are not allowed in passwords.",
    )
    assert describe("-1073741717")[0] == "STATUS_ILL_FORMED_PASSWORD"
    assert describe("%%1311", "ja") == (
        "ERROR_NO_LOGON_SERVERS",
        "現在、ログオン要求を処理できるログオン サーバーはありません。",
    )
    assert describe("0x8007051F")[0] == "ERROR_NO_LOGON_SERVERS"  # HRESULT of a win32 error
    assert describe("0x80090311", "ja")[1] == "認証するときにどの機関にもアクセスできませんでした。"
    assert describe("0xDEADBEEF") is None


def test_code_table_is_well_formed() -> None:
    table = yaml.safe_load(CODES_FILE.read_text(encoding="utf-8"))
    required = {"0xC000005E", "0xC000006B", "0xC000006D", "0xC0000022", "0xC00000E5", "0x80090311",
                "0x8009030E", "0x80090303", "0x0000051F", "0x0000052E", "0x00000005", "0x00002030",
                "0x000004C6", "0x800706E1", "0x80072AF9"}  # fmt: skip
    assert required <= set(table["codes"])
    for key, entry in table["codes"].items():
        assert re.fullmatch(r"0x[0-9A-F]{8}", key) and canonical(key) == key
        assert entry["name"] and entry["en"] and entry["ja"]
        assert entry["ja_source"] in ("article", "translation")
    for item in table["decimal_codes"]:
        assert set(item) == {"provider", "event_id", "param"} and item["param"] >= 1
