"""templates/messages and templates/events: both languages agree, templates use only known keys, and
event texts are filled the way Event Viewer fills them."""

from __future__ import annotations

import re
import string

import pytest

from evtxcorr.model import ROLES
from evtxcorr.render import messages as words
from evtxcorr.render.messages import LANGS, event_message, event_templates, format_message, messages
from evtxcorr.resources import data_dir

TEMPLATES = data_dir("templates")
RENDER_CODE = TEMPLATES.parent / "evtxcorr" / "render"

# Every event the rules use (the brief's list); each needs a text in every language.
RULE_EVENTS = {
    "NETLOGON": (5719, 3210, 5783, 5805),
    "Microsoft-Windows-FailoverClustering": (
        1228,
        1069,
        1126,
        1127,
        1129,
        1130,
        1135,
        1205,
        1206,
        1207,
        1153,
        1201,
        1204,
    ),
    "Microsoft-Windows-Hyper-V-High-Availability": (21502, 21111, 21300, 21301, 21119),
    "Microsoft-Windows-Hyper-V-VMMS": (20415,),
    "Tcpip": (4201, 4202),
    "e1iexpress": (27, 32),
    "Microsoft-Windows-GroupPolicy": (1129, 1500, 1501, 1502),
    "Microsoft-Windows-Time-Service": (129, 134, 35, 37),
}
# Keys looked up as msg[prefix ~ value] in templates, with the values they can take.
DYNAMIC_KEYS = {
    "role_": ROLES,
    "status_": ("present", "absent", "unknown"),
    "input_": ("ok", "partial", "skipped"),
}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _inserts(text: str) -> set[str]:
    return set(re.findall(r"%(\d+)", text.replace("%%", "")))


def _template_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(TEMPLATES.rglob("*.j2")))


def test_languages_have_the_same_message_keys() -> None:
    assert set(messages("en")) == set(messages("ja"))
    assert len(messages("en")) > 80


@pytest.mark.parametrize("key", sorted(messages("en")))
def test_message_fields_agree_across_languages(key: str) -> None:
    assert _fields(messages("en")[key]) == _fields(messages("ja")[key]), key


def test_languages_have_the_same_event_keys() -> None:
    assert set(event_templates("en")) == set(event_templates("ja"))


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("provider", "event_id"), [(p, i) for p, ids in RULE_EVENTS.items() for i in ids])
def test_every_rule_event_has_a_text(provider: str, event_id: int, lang: str) -> None:
    assert (provider.casefold(), event_id) in event_templates(lang)


@pytest.mark.parametrize("key", sorted(event_templates("en")))
def test_event_inserts_agree_across_languages(key: tuple[str, int]) -> None:
    en, ja = event_templates("en")[key], event_templates("ja")[key]
    assert set(en) == set(ja)
    for count in en:
        assert _inserts(en[count]) == _inserts(ja[count]), (key, count)


def test_templates_use_only_known_message_keys() -> None:
    text = _template_text()
    used = set(re.findall(r"\bmsg\.([a-z0-9_]+)", text))
    prefixes = set(re.findall(r'msg\["([a-z_]+)" ~', text))
    assert prefixes == set(DYNAMIC_KEYS)
    used |= {prefix + value for prefix, values in DYNAMIC_KEYS.items() for value in values}
    assert used - set(messages("en")) == set()


def test_every_message_key_is_used() -> None:
    """No dead sentences: a key is used by a template, by render code, or is an evidence note or level."""
    code = "\n".join(p.read_text(encoding="utf-8") for p in RENDER_CODE.glob("*.py"))
    text = _template_text()
    dynamic = {prefix + value for prefix, values in DYNAMIC_KEYS.items() for value in values}
    unused = [
        key
        for key in messages("en")
        if f"msg.{key}" not in text
        and f'"{key}"' not in code
        and key not in dynamic
        and not key.startswith(("evidence.", "level_"))
    ]
    assert unused == []


def test_diagnosis_notes_have_texts() -> None:
    diagnose = pytest.importorskip("evtxcorr.diagnose")
    notes = [value for name, value in vars(diagnose).items() if name.startswith("NOTE_")]
    assert notes and all(note in messages(lang) for note in notes for lang in LANGS)


def test_templates_hold_no_english_sentences() -> None:
    """Words live in messages/*.yaml: template text outside tags and markup has no English words."""
    text = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", " ", _template_text(), flags=re.S)
    text = re.sub(r"<style>.*?</style>|<[^>]*>", " ", text, flags=re.S)
    words_left = set(re.findall(r"\b[A-Za-z]{4,}\b", text)) - {"UTC", "DOCTYPE", "html"}
    assert words_left == set()


def test_5719_reason_insert_resolves_through_the_code_table() -> None:
    pytest.importorskip("evtxcorr.codes")
    text = event_message("NETLOGON", 5719, ("CONTOSO", "%%1311"))
    assert "domain CONTOSO due to the following:" in text
    assert "There are currently no logon servers available" in text
    assert "%%1311" not in text
    ja = event_message("NETLOGON", 5719, ("CONTOSO", "%%1311"), "ja")
    assert "ドメイン CONTOSO のドメイン コントローラー" in ja
    assert "%%1311" not in ja


def test_unknown_parameter_insert_stays_as_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(words, "describe_code", lambda code, lang: None)
    assert "%%1311" in event_message("NETLOGON", 5719, ("CONTOSO", "%%1311"))


def test_official_japanese_1228_text() -> None:
    text = event_message(
        "Microsoft-Windows-FailoverClustering",
        1228,
        ("クラスター名", "Unable to obtain a logon token", "-1073741717"),
        "ja",
    )
    assert text == (
        "クラスター ネットワーク名リソース 'クラスター名' がこのノードのネットワーク名を有効にする際に"
        "エラーが発生しました。エラーの原因: 'Unable to obtain a logon token'。 エラー コードは "
        "'-1073741717' です。 再試行するには、ネットワーク名リソースをオフラインにして、もう一度"
        "オンラインにしてください。"
    )


def test_21502_is_its_third_value() -> None:
    assert event_message("Microsoft-Windows-Hyper-V-High-Availability", 21502, ("a", "b", "whole text")) == (
        "whole text"
    )


def test_provider_match_ignores_case_and_unknown_is_none() -> None:
    assert event_message("netlogon", 5783, ("\\\\DC1", "CONTOSO", "HV01")).startswith(
        "The session setup to the Windows Domain Controller \\\\DC1 for the domain CONTOSO"
    )
    assert event_message("NETLOGON", 9999, ()) is None
    assert event_message("Nobody", 5719, ()) is None


def test_variant_chosen_by_value_count() -> None:
    three = event_message(
        "Microsoft-Windows-FailoverClustering", 1069, ("Cluster Name", "Cluster Group", "Network Name")
    )
    five = event_message(
        "Microsoft-Windows-FailoverClustering",
        1069,
        ("Cluster Name", "Cluster Group", "Network Name", "The parameter is incorrect.", "87"),
    )
    assert "error code" not in three and "%5" not in three
    assert "The error code was '87' ('The parameter is incorrect.')" in five


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [
        ("a %1 b %2", ("x",), "a x b %2"),  # missing insert kept, as Event Viewer shows it
        ("%1%n%2%t%%", ("x", "y"), "x\ny\t%"),
        ("%1!s! done", ("x",), "x done"),
        ("%10 %1", tuple("abcdefghij"), "j a"),
        ("%1", ("%2",), "%2"),  # values are not re-scanned
    ],
)
def test_format_message(template: str, data: tuple[str, ...], expected: str) -> None:
    assert format_message(template, data, "en") == expected
