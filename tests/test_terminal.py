"""terminal.safe: what the inputs say is shown, never obeyed, by a terminal."""

from __future__ import annotations

import pytest

from evtxcorr.terminal import safe


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("HV01/System.evtx", "HV01/System.evtx"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("bell\x07", "bell\\x07"),
        ("two\nlines\r", "two\\x0alines\\x0d"),
        ("csi\x9b31m", "csi\\x9b31m"),
        ("rtl\u202eexe.evtx", "rtl\\u202eexe.evtx"),
        ("日本語のホスト", "日本語のホスト"),
    ],
)
def test_controls_are_shown_as_escapes(text: str, shown: str) -> None:
    assert safe(text) == shown


def test_keep_lines_keeps_newlines_and_tabs_only() -> None:
    assert safe("a\tb\nc\x1b", keep_lines=True) == "a\tb\nc\\x1b"
