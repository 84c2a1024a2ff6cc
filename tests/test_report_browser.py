"""The HTML report in a real browser (Debian's chromium via Playwright): no script runs, nothing is
fetched, hostile event text shows as text. Screenshots go to the test's tmp dir for a human look."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_factory import IMG, JS_URL, SCRIPT, make_report

from evtxcorr.render import render

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); CI installs it",
    ),
]


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield instance
        instance.close()


def _open(browser, path: Path):  # type: ignore[no-untyped-def]
    """Load `path` and record console errors, page errors, requests and dialogs while it loads."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    seen: dict[str, list[str]] = {"console": [], "errors": [], "requests": [], "dialogs": []}
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))

    def dialog(d) -> None:  # type: ignore[no-untyped-def]
        seen["dialogs"].append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_timeout(300)  # let any (unwanted) deferred handler fire before we assert
    return page, seen


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_hostile_report_loads_inert(browser, tmp_path: Path, lang: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"report-{lang}.html"
    path.write_text(render(make_report(hostile=True), "html", lang=lang, tz="Asia/Tokyo"), encoding="utf-8")
    page, seen = _open(browser, path)
    page.screenshot(path=str(tmp_path / f"report-{lang}.png"), full_page=True)
    assert seen["dialogs"] == []
    assert seen["errors"] == []
    assert seen["console"] == []
    assert seen["requests"] == [path.as_uri()]
    assert page.locator("script, img, iframe, object, embed, link").count() == 0
    assert page.locator("a[href^='javascript' i]").count() == 0
    for text in (SCRIPT, IMG, JS_URL, "invoice[U+202E]gnp.exe"):
        assert page.get_by_text(text, exact=False).count() > 0, text
    page.close()


def test_report_layout(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "report.html"
    path.write_text(render(make_report(), "html", tz="Asia/Tokyo"), encoding="utf-8")
    page, seen = _open(browser, path)
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert seen["requests"] == [path.as_uri()] and seen["errors"] == [] and seen["console"] == []
    assert page.title().startswith("evtxcorr incident report")
    timeline = page.locator("svg.timeline").first.bounding_box()
    assert timeline and timeline["width"] > 800 and timeline["height"] > 80
    fill = page.locator(".confidence .fill").first.bounding_box()
    bar = page.locator(".confidence .bar").first.bounding_box()
    assert fill and bar and 0.85 < fill["width"] / bar["width"] < 0.95
    assert page.locator("#evidence tbody tr").count() == 7
    assert page.locator("#inputs tbody tr").count() == 5
    page.close()


def test_report_of_a_forged_bundle_with_hostile_event_data(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The whole pipeline, forge to browser: attacker text written into real EVTX records (the domain
    of a 5719, the VM name of a 21502) reaches the report as text, and the finding still stands."""
    from dataclasses import replace

    from evtxcorr.analyze import analyze
    from evtxcorr.forge import expand
    from evtxcorr.forge.events import Classic, UserData, s
    from evtxcorr.forge.writer import write_evtx

    def poison(event):  # type: ignore[no-untyped-def]
        if event.provider == "NETLOGON" and event.event_id == 5719:
            return replace(event, payload=Classic((SCRIPT, *event.payload.strings[1:]), event.payload.binary))
        if event.event_id == 21502 and isinstance(event.payload, UserData):
            fields = ((event.payload.fields[0][0], s(IMG)), *event.payload.fields[1:])
            return replace(event, payload=replace(event.payload, fields=fields))
        return event

    for (host, channel), events in expand("shared-nic-sole-dc-path").items():
        target = tmp_path / "bundle" / host.split(".")[0] / f"{channel.replace('/', '%4')}.evtx"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_evtx(target, [poison(e) for e in events])
    report = analyze([tmp_path / "bundle"])
    assert [f.cause for f in report.findings] == ["shared-nic-sole-dc-path"]
    path = tmp_path / "report.html"
    path.write_text(render(report, "html", lang="ja", tz="Asia/Tokyo"), encoding="utf-8")
    page, seen = _open(browser, path)
    page.screenshot(path=str(tmp_path / "forged-report.png"), full_page=True)
    assert seen == {"console": [], "errors": [], "requests": [path.as_uri()], "dialogs": []}
    assert page.locator("script, img, iframe, object, embed, link").count() == 0
    for text in (SCRIPT, IMG):
        assert page.get_by_text(text, exact=False).count() > 0, text
    page.close()
