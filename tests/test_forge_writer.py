"""The EVTX writer: files it writes read back identically in python-evtx, Rust evtx and libevtx."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from evtx_readback import (
    READERS,
    as_libevtx_prints,
    expected_records,
    read_libevtx,
    read_python_evtx,
    read_python_evtx_records,
    read_rust,
    strip,
)
from forge_samples import FC_GUID, HA_GUID, HOSTS, T0, VML_NS, V, mixed_events
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evtxcorr.forge.binxml import name_hash
from evtxcorr.forge.events import Classic, EventData, ForgedEvent, UserData, Value, s, u32
from evtxcorr.forge.structs import CHUNK_SIZE, FILE_HEADER_BLOCK, filetime
from evtxcorr.forge.writer import RecordTooLarge, evtx_bytes, write_evtx


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ForgedEvent]]:
    events = mixed_events()
    path = tmp_path_factory.mktemp("forge") / "mixed.evtx"
    stats = write_evtx(path, events)
    assert stats.records == len(events) and stats.chunks >= 3
    return path, events


def chunk_offsets(data: bytes) -> list[int]:
    return list(range(FILE_HEADER_BLOCK, len(data) - CHUNK_SIZE + 1, CHUNK_SIZE))


# ---- the clean file ----------------------------------------------------------------------------


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_parser_reads_back_exactly_what_was_written(mixed, reader):
    path, events = mixed
    readback = read_python_evtx(path, render_xml=True) if reader == "python-evtx" else READERS[reader](path)
    assert readback.errors == [] and readback.corrupted in (None, False)
    assert strip(readback.records, "recovered") == expected_records(events)


def test_templates_are_resident_once_per_chunk_then_referenced(mixed):
    import Evtx.Evtx as PyEvtx

    path, _ = mixed
    with PyEvtx.Evtx(str(path)) as log:
        chunks = list(log.get_file_header().chunks())
        assert len(chunks) >= 3
        for chunk in chunks:
            resident, referenced, offsets = 0, 0, set()
            for record in chunk.records():
                instance = record.root().template_instance()
                if instance.is_resident_template():
                    resident += 1
                    assert instance.template_offset() not in offsets
                else:
                    referenced += 1
                    assert instance.template_offset() in offsets  # defined earlier in this chunk
                offsets.add(instance.template_offset())
            assert resident == len(offsets) and referenced > resident
            assert set(chunk.templates()) >= offsets  # the template pointer table reaches every definition


def test_one_template_per_structure(mixed):
    """All 5719s share one outer template per host, all classic payloads one EventData template."""
    import Evtx.Evtx as PyEvtx

    path, _ = mixed
    with PyEvtx.Evtx(str(path)) as log:
        chunk = next(log.get_file_header().chunks())
        outer: dict[tuple, set] = {}
        inner: dict[str, set] = {}
        for record in chunk.records():
            root = record.root()
            subs = root.substitutions()
            xml = record.lxml()
            ns = {"e": "http://schemas.microsoft.com/win/2004/08/events/event"}
            key = (
                xml.findtext("e:System/e:Computer", namespaces=ns),
                xml.find("e:System/e:Provider", ns).get("Name"),
            )
            outer.setdefault(key, set()).add(root.template_instance().template_id())
            nested = subs[-1].root()
            inner.setdefault(key[1], set()).add(nested.template_instance().template_id())
        assert all(len(ids) == 1 for ids in outer.values())
        assert all(len(ids) == 1 for ids in inner.values())
        classic = {next(iter(inner[p])) for p in ("NETLOGON", "Tcpip", "e1iexpress")}
        assert len(classic) == 1
        host_ids = {next(iter(outer[(h, "Microsoft-Windows-FailoverClustering")])) for h in HOSTS}
        assert len(host_ids) == 2  # Computer is a literal: one System template per host


def test_crcs_and_header_verify(mixed):
    import Evtx.Evtx as PyEvtx

    path, events = mixed
    with PyEvtx.Evtx(str(path)) as log:
        header = log.get_file_header()
        assert header.verify() and header.is_dirty()
        assert (header.major_version(), header.minor_version()) == (3, 1)
        chunks = list(header.chunks(include_inactive=True))
        assert header.chunk_count() == len(chunks)
        assert header.next_record_number() == len(events) + 1
        assert all(chunk.verify() for chunk in chunks)
    assert read_python_evtx_records(path) == list(range(1, len(events) + 1))
    import evtx

    checked = evtx.PyEvtxParser(str(path), number_of_threads=1, validate_checksums=True)
    assert sum(1 for _ in checked.records()) == len(events)


def test_record_layout(mixed):
    path, events = mixed
    data = path.read_bytes()
    assert data[:8] == b"ElfFile\0"
    assert (len(data) - FILE_HEADER_BLOCK) % CHUNK_SIZE == 0
    seen = 0
    for start in chunk_offsets(data):
        chunk = data[start : start + CHUNK_SIZE]
        first_id, last_id = struct.unpack_from("<QQ", chunk, 24)
        last_offset, free = struct.unpack_from("<II", chunk, 44)
        offset, ids = 512, []
        while offset < free:
            magic, size, record_id, written = struct.unpack_from("<4sIQQ", chunk, offset)
            assert magic == b"**\0\0" and size % 8 == 0
            assert struct.unpack_from("<I", chunk, offset + size - 4)[0] == size
            assert written == filetime(events[record_id - 1].time)
            ids.append(record_id)
            last = offset
            offset += size
        assert offset == free and last == last_offset and ids[0] == first_id and ids[-1] == last_id
        assert chunk[free:] == bytes(CHUNK_SIZE - free)
        seen += len(ids)
    assert seen == len(events)


def test_deterministic(tmp_path):
    events = mixed_events(300)
    first = evtx_bytes(events)
    assert evtx_bytes(list(events)) == first
    write_evtx(tmp_path / "a.evtx", events)
    assert (tmp_path / "a.evtx").read_bytes() == first


def test_deterministic_across_processes(tmp_path):
    """A fresh interpreter (other hash seed, no interned templates) writes the same bytes."""
    import os
    import subprocess
    import sys

    evtx_bytes(mixed_events(50)[::-1])  # intern the templates in another order first
    script = (
        "import sys; from forge_samples import mixed_events; from evtxcorr.forge.writer import evtx_bytes; "
        "sys.stdout.buffer.write(evtx_bytes(mixed_events(50)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    tests_dir = str(Path(__file__).parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests_dir, env.get("PYTHONPATH", "")]))
    fresh = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=True).stdout
    assert fresh == evtx_bytes(mixed_events(50))


def test_record_ids_first_id_and_overrides(tmp_path):
    events = mixed_events(16)
    events[5] = ForgedEvent(**{**events[5].__dict__, "record_id": 9000})
    path = tmp_path / "ids.evtx"
    write_evtx(path, events, first_record_id=500)
    expected = expected_records(events, first_record_id=500)
    assert [r["record_id"] for r in expected][4:7] == [504, 9000, 506]
    for reader in READERS.values():
        assert strip(reader(path).records, "recovered") == expected


def test_clean_header_flag(tmp_path):
    import Evtx.Evtx as PyEvtx

    path = tmp_path / "clean.evtx"
    write_evtx(path, mixed_events(10), dirty=False)
    with PyEvtx.Evtx(str(path)) as log:
        assert not log.get_file_header().is_dirty() and log.get_file_header().verify()


def test_empty_event_list_writes_a_header_only_file(tmp_path):
    stats = write_evtx(tmp_path / "empty.evtx", [])
    assert stats.records == 0 and stats.chunks == 0 and stats.bytes == FILE_HEADER_BLOCK
    assert read_rust(tmp_path / "empty.evtx").records == []


def test_record_too_large_is_refused():
    huge = ForgedEvent(
        time=T0,
        provider="NETLOGON",
        event_id=1,
        channel="System",
        computer="H",
        payload=Classic(("x" * 32000,)),
    )
    with pytest.raises(RecordTooLarge):
        evtx_bytes([huge])
    with pytest.raises(ValueError, match="65535"):
        evtx_bytes([ForgedEvent(**{**huge.__dict__, "payload": Classic(("x" * 40000,))})])


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "bad.evtx"
    with pytest.raises(ValueError, match="stale_chunk_count"):
        write_evtx(path, mixed_events(5), stale_chunk_count=3)
    assert not path.exists()


def test_name_hash_matches_windows():
    # from a real chunk (system.evtx): Event 0x0cba, Computer 0x6e3b, Channel 0x6183
    assert [name_hash(n) for n in ("Event", "Computer", "Channel")] == [0x0CBA, 0x6E3B, 0x6183]


# ---- stale header (damage: test_forge_damage.py) -----------------------------------------------------------------


@pytest.mark.parametrize("dirty", [True, False])
def test_stale_chunk_count(tmp_path, mixed, dirty):
    _, events = mixed
    path = tmp_path / "stale.evtx"
    stats = write_evtx(path, events, stale_chunk_count=1, dirty=dirty)
    assert stats.chunks >= 3
    data = path.read_bytes()
    declared = list(range(1, struct.unpack_from("<Q", data, FILE_HEADER_BLOCK + 32)[0] + 1))
    assert struct.unpack_from("<H", data, 42)[0] == 1
    assert struct.unpack_from("<Q", data, 24)[0] == declared[-1] + 1  # next record id, as of chunk 0
    # python-evtx's default records() trusts the header: it misses every chunk after the first
    assert read_python_evtx_records(path) == declared
    assert read_python_evtx(path, include_inactive=False).ids == declared
    # chunk iteration (python-evtx include_inactive), Rust and libevtx all see every record
    expected = expected_records(events)
    for name, reader in READERS.items():
        records = strip(reader(path).records, "recovered")
        assert sorted(records, key=lambda r: r["record_id"]) == expected, name
    # libevtx flags the file corrupt; on a clean-flagged file the rest come back as "recovered" records
    libevtx = read_libevtx(path)
    recovered = [r["record_id"] for r in libevtx.records if r.get("recovered")]
    assert libevtx.corrupted
    assert recovered == ([] if dirty else list(range(declared[-1] + 1, len(events) + 1)))


# ---- parser quirks we rely on being documented -----------------------------------------------


def test_libevtx_misrenders_negative_signed_integers_and_size_t(tmp_path):
    fields = (("i8", Value(V.INT8, -5)), ("i32", Value(V.INT32, -70000)), ("size", Value(V.SIZE_T, 0x3039)))
    event = ForgedEvent(
        time=T0,
        provider="P",
        provider_guid=FC_GUID,
        event_id=1,
        channel="System",
        computer="H",
        payload=EventData(fields),
    )
    path = tmp_path / "signed.evtx"
    write_evtx(path, [event])
    expected = expected_records([event])
    assert read_python_evtx(path).records == expected
    assert read_rust(path).records == expected
    libevtx_fields = read_libevtx(path).records[0]["payload"][2]
    assert libevtx_fields == (("i8", "-123"), ("i32", "-2147413648"), ("size", "0x0"))


def test_control_characters_in_text(tmp_path):
    """Windows strings may hold C0 controls. python-evtx drops them; Rust and libevtx emit them raw,
    which makes their XML not well-formed (lxml refuses it), so a reader must sanitise or recover."""
    import evtx
    import Evtx.Evtx as PyEvtx
    import pyevtx
    from lxml import etree

    event = ForgedEvent(
        time=T0,
        provider="P",
        provider_guid=FC_GUID,
        event_id=1,
        channel="System",
        computer="H",
        payload=EventData((("a", s("x\x01y")),)),
    )
    path = tmp_path / "ctl.evtx"
    write_evtx(path, [event])
    with PyEvtx.Evtx(str(path)) as log:
        assert '<Data Name="a">xy</Data>' in next(log.records()).xml()
    rust_xml = next(evtx.PyEvtxParser(str(path)).records())["data"]
    handle = pyevtx.file()
    handle.open(str(path))
    libevtx_xml = handle.get_record(0).get_xml_string()
    handle.close()
    for xml in (rust_xml, libevtx_xml):
        assert "x\x01y" in xml
        with pytest.raises(etree.XMLSyntaxError):
            etree.fromstring(xml.encode("utf-8"))


# ---- arbitrary text ----------------------------------------------------------------------------

XML_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"),
        blacklist_characters="\ufffe\uffff",
    )
    | st.sampled_from("<>&\"'\t\n 😀𝄞"),
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(XML_TEXT, min_size=1, max_size=4))
@example(texts=["\n"])  # libevtx prints it empty (as_libevtx_prints)
def test_arbitrary_strings_round_trip(tmp_path, texts):
    events = [
        ForgedEvent(
            time=T0,
            provider="NETLOGON",
            event_id=5719,
            channel="System",
            computer="H",
            payload=Classic(tuple(texts), b"\x5e\0\0\xc0"),
        ),
        ForgedEvent(
            time=T0,
            provider="P",
            provider_guid=FC_GUID,
            event_id=1,
            channel="System",
            computer="H",
            payload=EventData(tuple((f"F{i}", s(t)) for i, t in enumerate(texts))),
        ),
        ForgedEvent(
            time=T0,
            provider="P",
            provider_guid=HA_GUID,
            event_id=2,
            channel="System",
            computer="H",
            payload=UserData("VmlEventLog", VML_NS, tuple((f"P{i}", s(t)) for i, t in enumerate(texts))),
        ),
    ]
    path = tmp_path / "text.evtx"
    write_evtx(path, events)
    expected = expected_records(events)
    for name, reader in READERS.items():
        readback = reader(path)
        assert readback.errors == [], name
        want = as_libevtx_prints(expected) if name == "libevtx" else expected
        assert strip(readback.records, "recovered") == want, name


def test_libevtx_prints_a_lone_line_feed_empty(tmp_path):
    """The one text libevtx shows differently (found by the round trip above): Rust keeps it."""
    event = ForgedEvent(
        time=T0, provider="NETLOGON", event_id=5719, channel="System", computer="H", payload=Classic(("\n",))
    )
    path = tmp_path / "lf.evtx"
    write_evtx(path, [event])
    assert READERS["libevtx"](path).records[0]["payload"][2] == ((None, ""),)
    assert READERS["rust"](path).records[0]["payload"][2] == ((None, "\n"),)


# ---- compared with Windows -------------------------------------------------------------------


def test_system_templates_match_windows(corpus_dir, tmp_path):
    """Our three System templates render like Windows' own (corpus system.evtx, first chunk)."""
    import Evtx.Evtx as PyEvtx
    from Evtx.Views import evtx_template_readable_view

    def views(path: Path) -> dict[str, str]:
        out: dict[str, str] = {}
        with PyEvtx.Evtx(str(path)) as log:
            for record in next(log.get_file_header().chunks()).records():
                root = record.root()
                provider = record.lxml().find(".//{*}Provider").get("Name")
                out.setdefault(provider, evtx_template_readable_view(root))
        return out

    windows = views(corpus_dir / "system.evtx")
    ours_path = tmp_path / "ours.evtx"
    host = "WIN-P4SIAA0SQCO"
    write_evtx(
        ours_path,
        [
            ForgedEvent(time=T0, provider="EventLog", event_id=6009, channel="System", computer=host),
            ForgedEvent(
                time=T0,
                provider="Microsoft-Windows-Kernel-General",
                provider_guid="{A68CA8B7-004F-D7B6-A698-07E2DE0F1F5D}",
                event_id=12,
                channel="System",
                computer=host,
                payload=EventData((("MajorVersion", u32(10)),)),
            ),
            ForgedEvent(
                time=T0,
                provider="Service Control Manager",
                event_source_name="Service Control Manager",
                provider_guid="{555908d1-a6d7-4695-8e1e-26931d2012f4}",
                event_id=7000,
                channel="System",
                computer=host,
                payload=EventData((("param1", s("x")),)),
            ),
        ],
    )
    ours = views(ours_path)
    for provider in ("EventLog", "Microsoft-Windows-Kernel-General", "Service Control Manager"):
        assert ours[provider] == windows[provider], provider


def _mask_record(record: bytes) -> bytes:
    """Zero what cannot match Windows: the written time and the value TimeCreated (sub-microsecond
    ticks), and the two template ids and GUIDs (ours are uuid5 of the structure)."""
    masked = bytearray(record)
    masked[16:24] = bytes(8)
    for start in (24, record.index(b"\x0f\x01\x01\x00\x0c\x01", 40)):
        masked[start + 6 : start + 10] = bytes(4)  # template id
        masked[start + 18 : start + 34] = bytes(16)  # GUID of the resident definition
    return bytes(masked)


def test_first_record_is_byte_identical_to_windows(corpus_dir):
    """Record 1 of the corpus system.evtx (EventLog 6009, classic), rebuilt from its field values."""
    windows = (corpus_dir / "system.evtx").read_bytes()[FILE_HEADER_BLOCK : FILE_HEADER_BLOCK + CHUNK_SIZE]
    ticks = struct.unpack_from("<Q", windows, 512 + 16)[0]
    moment = datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=ticks // 10)
    event = ForgedEvent(
        time=moment,
        provider="EventLog",
        event_id=6009,
        channel="System",
        computer="WIN-P4SIAA0SQCO",
        qualifiers=32768,
        keywords=0x80000000000000,
        payload=Classic(("10.00.", "15063", "", "Multiprocessor Free", "0")),
    )
    ours = evtx_bytes([event])[FILE_HEADER_BLOCK : FILE_HEADER_BLOCK + CHUNK_SIZE]
    size = struct.unpack_from("<I", windows, 516)[0]
    assert struct.unpack_from("<I", ours, 516)[0] == size
    windows_record, our_record = windows[512 : 512 + size], ours[512 : 512 + size]
    time_value = windows_record.index(struct.pack("<Q", ticks), 24)
    masked_windows = bytearray(_mask_record(windows_record))
    masked_ours = bytearray(_mask_record(our_record))
    masked_windows[time_value : time_value + 8] = masked_ours[time_value : time_value + 8] = bytes(8)
    assert masked_ours == masked_windows
