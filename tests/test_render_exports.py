"""Reports on exports: Windows' own message beside ours, converted times, payload that is unknown."""

from __future__ import annotations

import json

import pytest

from evtxcorr.analyze import Options, analyze
from evtxcorr.forge import forge_bundle
from evtxcorr.render import render

SCENARIO = "shared-nic-sole-dc-path"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("render-exports")
    forge_bundle(SCENARIO, root / "xml", format="xml-ja")
    forge_bundle(SCENARIO, root / "csv", format="csv-eventviewer-ja", tz="Asia/Tokyo")
    return {
        "xml": analyze([root / "xml"]),
        "csv": analyze([root / "csv"], Options(source_tz="Asia/Tokyo")),
    }


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_windows_text_is_shown_beside_ours(reports: dict, lang: str) -> None:
    html = render(reports["xml"], "html", lang=lang)
    md = render(reports["xml"], "md", lang=lang)
    label = {
        "en": "Text rendered by the exporting Windows (ja-JP):",
        "ja": "エクスポート元の Windows が表示した文面 (ja-JP):",
    }
    for text in (html, md):
        assert label[lang] in text
        assert "このコンピューターはドメイン CONTOSO のドメイン コントローラー" in text.replace("\n", "")


def test_converted_times_and_unknown_payload_are_said(reports: dict) -> None:
    report = reports["csv"]
    md = render(report, "md", lang="en")
    assert "Times converted from local time" in md
    assert "System.csv: local times read in Asia/Tokyo, converted to UTC" in md
    html = render(report, "html", lang="ja")
    assert "ローカル時刻を Asia/Tokyo として読み、UTC に変換しました" in html
    assert report.findings, "the CSV rows still anchor an incident and a finding"
    assert "evidence that depends on payload values could not be checked on it" in md
    data = json.loads(render(report, "json"))
    assert {entry["source_tz"] for entry in data["inputs"]} == {"Asia/Tokyo"}
    cited = [e for f in data["findings"] for e in f["evidence"]]
    assert cited
