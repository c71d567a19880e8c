"""The readers on real logs: Zeek TSV and JSON, Suricata eve, gzip, discovery, blocks, resume.

Expected values are computed here from the input bytes by a small, independent reading of
Zeek's TSV format (``read_zeek_tsv`` below), or by comparing two renderings of the same records
(plain and gzip, LF and CRLF, epoch and ISO 8601 times, small and large blocks); none is
typed in by hand.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from correlator.errors import InputError
from correlator.normalise.mapping import Target, load_mapping
from correlator.sources.base import LogFormat
from correlator.sources.files import LogFile, discover, recognise
from correlator.sources.reader import BlockRead, Position, ReadLimits, read_log
from correlator.testing import Loaded, load_events
from tests.conftest import DATA, Runner, shared

#: Columns that say where a record came from; they differ between two copies of a file.
ORIGIN: Final = ("event.id", "log.file.path", "log.offset")
TINY: Final = ReadLimits(block_bytes=4096, max_line_bytes=16 << 20)
MDNS: Final = DATA / "zeek" / "dns-mdns-escapes.log"
UNANSWERED_TSV: Final = DATA / "zeek" / "dns-unanswered.log"
UNANSWERED_JSON: Final = DATA / "zeek" / "dns-unanswered.json"
EVE: Final = DATA / "suricata" / "eve-excerpt.json"

Row = dict[str, Any]


# -- an independent reading of Zeek's TSV format ---------------------------------------------

_TSV_ESCAPE: Final = re.compile(rb"\\\\|\\x([0-9a-fA-F]{2})")
# Zeek's JSON writer leaves these control characters as \xNN text (it has short escapes for
# \b \t \n \f \r); Furui follows it so that both renderings of a log give the same value.
_JSON_KEPT_ESCAPED: Final = re.compile(r"[\x00-\x07\x0b\x0e-\x1f\x7f]")
_CONTAINER: Final = re.compile(r"^(set|vector)\[(.+)\]$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class TsvSection:
    """Rows written under one Zeek TSV header."""

    path: str
    fields: list[str]
    types: list[str]
    set_separator: str
    empty_field: str
    unset_field: str
    rows: list[tuple[int, list[str]]] = field(default_factory=list)  # (line, cells)

    def value(self, cell: str, zeek_type: str) -> object:
        """The value Zeek wrote as ``cell``."""
        if cell == self.unset_field:
            return None
        container = _CONTAINER.match(zeek_type)
        if container:
            if cell == self.empty_field:
                return []
            return [_scalar(e, container.group(2)) for e in cell.split(self.set_separator)]
        if cell == self.empty_field:
            return ""
        return _scalar(cell, zeek_type)


def zeek_text(cell: str) -> str:
    r"""Decode Zeek's TSV escapes: ``\xNN`` is a byte, ``\\`` a backslash."""

    def byte(match: re.Match[bytes]) -> bytes:
        return b"\\" if match.group(0) == b"\\\\" else bytes([int(match.group(1), 16)])

    text = _TSV_ESCAPE.sub(byte, cell.encode()).decode("utf-8", errors="backslashreplace")
    return _JSON_KEPT_ESCAPED.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _scalar(cell: str, zeek_type: str) -> object:
    if zeek_type == "time":
        return _EPOCH + timedelta(microseconds=int(Decimal(cell) * 1_000_000))
    if zeek_type in ("interval", "double"):
        return float(cell)
    if zeek_type in ("count", "int", "port"):
        return int(cell)
    if zeek_type == "bool":
        assert cell in ("T", "F"), cell
        return cell == "T"
    return zeek_text(cell)


def read_zeek_tsv(data: bytes) -> list[TsvSection]:
    """Every header section of a Zeek TSV file, with its data rows and their line numbers."""
    sections: list[TsvSection] = []
    header: dict[str, str] = {}
    separator = "\t"
    current: TsvSection | None = None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.removesuffix(b"\r").decode("utf-8")
        if not line:
            continue
        if line.startswith("#separator "):
            separator = zeek_text(line.split(" ", 1)[1])
            header = {}
            current = None
            continue
        if line.startswith("#"):
            key, _, value = line[1:].partition(separator)
            header[key] = value
            if key == "types":
                current = TsvSection(
                    path=header["path"],
                    fields=header["fields"].split(separator),
                    types=value.split(separator),
                    set_separator=header["set_separator"],
                    empty_field=header["empty_field"],
                    unset_field=header["unset_field"],
                )
                sections.append(current)
            continue
        assert current is not None, f"line {number} before a header"
        current.rows.append((number, line.split(separator)))
    return sections


def identity_columns(log_type: str, fields: list[str]) -> list[tuple[str, str]]:
    """(Zeek field, event column) pairs where the column holds the field's value unchanged.

    Taken from the mapping table, which is configuration rather than the code under test.
    Columns that several fields or a derivation write to are left out.
    """
    mappings = load_mapping("zeek")
    mapping = mappings.for_log(log_type) or mappings.generic(log_type, "zeek")
    writers: dict[str, list[str]] = defaultdict(list)
    for name in fields:
        targets = mapping.targets(name) or (Target(to=f"{mapping.prefix}.{name}"),)
        for target in targets:
            writers[target.to].append(name if target.op == "identity" else "")
    derived = {d.to for d in mapping.derive}
    return [
        (names[0], column)
        for column, names in writers.items()
        if len(names) == 1 and names[0] and column not in derived
    ]


def rows_by_line(loaded: Loaded, path: Path) -> dict[int, tuple[str, Row]]:
    """Events of ``path`` by line, with their stream; fails on a line stored twice."""
    found: dict[int, tuple[str, Row]] = {}
    for stream, table in loaded.streams.items():
        mine = table.filter(pc.equal(table.column("log.file.path"), str(path)))
        for row in mine.to_pylist():
            line = row["furui.line"]
            assert line not in found, f"{path}:{line} gives two events"
            found[line] = (stream, row)
    return found


def check_against_tsv(path: Path, data: bytes | None = None) -> int:
    """Read ``path`` and compare every event with the TSV text it came from.

    Returns:
        The number of values compared.
    """
    loaded = load_events(path)
    assert not loaded.rejects, [r.reason for r in loaded.rejects]
    sections = read_zeek_tsv(path.read_bytes() if data is None else data)
    events = rows_by_line(loaded, path)
    expected_lines = {line for s in sections for line, _ in s.rows}
    assert set(events) == expected_lines
    compared = 0
    mappings = load_mapping("zeek")
    for section in sections:
        mapping = mappings.for_log(section.path) or mappings.generic(section.path, "zeek")
        types = dict(zip(section.fields, section.types, strict=True))
        pairs = identity_columns(section.path, section.fields)
        assert ("ts", "@timestamp") in pairs
        for line, cells in section.rows:
            _, event = events[line]
            assert event["event.dataset"] == mapping.dataset, line
            values = dict(zip(section.fields, cells, strict=True))
            for name, column in pairs:
                expected = section.value(values[name], types[name])
                assert event[column] == expected, f"{path}:{line} {name} → {column}"
                compared += 1
    return compared


def canonical(table: pa.Table, drop: tuple[str, ...] = ORIGIN) -> pa.Table:
    """A table without the origin columns, its columns in name order."""
    kept = table.drop_columns([c for c in drop if c in table.column_names])
    return kept.select(sorted(kept.column_names))


def assert_same_events(left: Loaded, right: Loaded, drop: tuple[str, ...] = ORIGIN) -> None:
    """Two reads of the same records give the same events, origin aside."""
    assert not left.rejects
    assert not right.rejects
    assert left.streams.keys() == right.streams.keys()
    for stream in left.streams:
        a, b = canonical(left.stream(stream), drop), canonical(right.stream(stream), drop)
        assert a.schema == b.schema, stream
        assert a.num_rows == b.num_rows > 0, stream
        for name in a.column_names:
            assert a.column(name).equals(b.column(name)), f"{stream}: {name} differs"


def data_lines(path: Path) -> list[int]:
    """Line numbers of the records of a (possibly gzip) log: lines that are not headers."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return [
        number
        for number, line in enumerate(raw.split(b"\n"), start=1)
        if line.strip() and not line.startswith(b"#")
    ]


# -- Zeek TSV ---------------------------------------------------------------------------------


def test_fixtures_hold_the_cases_they_are_for() -> None:
    text = MDNS.read_text(encoding="utf-8")
    sections = read_zeek_tsv(MDNS.read_bytes())
    assert len(sections) == 1
    section = sections[0]
    cells = [dict(zip(section.fields, c, strict=True)) for _, c in section.rows]
    assert r"\x09" in text.splitlines()[0]
    assert any(r"\x2c" in c["answers"] and "," in c["answers"] for c in cells)
    assert any(r"\xe2\x80\x99" in c["query"] for c in cells)
    assert any(r"\x01" in c["query"] for c in cells)
    assert any(c["answers"] == "-" for c in cells)
    assert any(c["detailedlabel"] == "(empty)" for c in cells)
    assert any(len(c["TTLs"].split(",")) > 2 for c in cells)
    assert text.splitlines()[-1].startswith("#close")
    assert not text.endswith("\n")


@pytest.mark.parametrize(
    "where",
    [
        ("data", "zeek/dns-mdns-escapes.log"),
        ("data", "zeek/dns-unanswered.log"),
        ("shared", "stratosphere-ctu-zeek/006-zeek-scenario-ssh/conn.log"),
        ("shared", "stratosphere-ctu-zeek/006-zeek-scenario-ssh/ssh.log"),
        ("shared", "stratosphere-ctu-zeek/003-zeek-scenario-malicious/dns.log"),
        ("shared", "stratosphere-ctu-zeek/005-zeek-scenario-malicious/conn.log"),
        ("shared", "stratosphere-ctu-zeek/008-zeek-mixed/data/weird.log.labeled"),
        ("shared", "stratosphere-ctu-zeek/008-zeek-mixed/data/sip.log.labeled"),
        ("shared", "stratosphere-ctu-zeek/008-zeek-mixed/data/tunnel.log.labeled"),
        ("shared", "stratosphere-ctu-zeek/008-zeek-mixed/data/notice.log.labeled"),
        ("shared", "stratosphere-ctu-sme-11-labelled/zeek-labeled/conn.log.labeled"),
        ("shared", "stratosphere-ctu-sme-11-labelled/zeek-labeled/dns.log.labeled"),
        ("shared", "stratosphere-ctu-sme-11-labelled/zeek-labeled/quic.log.labeled"),
        ("shared", "zeek-wrccdc2018/zeek-default/smb_mapping.log.gz"),
        ("shared", "zeek-wrccdc2018/zeek-default/dce_rpc.log.gz"),
        ("shared", "zeek-wrccdc2018/zeek-default/notice.log.gz"),
        ("shared", "zeek-wrccdc2018/zeek-default/x509.log.gz"),
    ],
    ids=lambda w: w[1],
)
def test_tsv_values_match_what_zeek_wrote(where: tuple[str, str]) -> None:
    """Header, markers, escapes, containers and types, cell by cell against the text."""
    kind, name = where
    path = DATA / name if kind == "data" else shared(*name.split("/"))
    raw = path.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    assert check_against_tsv(path, data) > 0


def test_escapes_in_a_vector_element_and_a_string(tmp_path: Path) -> None:
    """``\\x2c`` stays inside its element; a lone ``\\x2d`` is the text "-", not unset."""
    lines = MDNS.read_bytes().split(b"\n")
    fields = lines[6].decode().split("\t")[1:]
    index = {name: i for i, name in enumerate(fields)}
    target = next(i for i, line in enumerate(lines) if rb"\x2c" in line)
    cells = lines[target].split(b"\t")
    cells[index["qclass_name"]] = rb"\x2d"
    cells[index["label"]] = rb"\x28empty)"
    lines[target] = b"\t".join(cells)
    path = tmp_path / "dns.log"
    path.write_bytes(b"\n".join(lines))
    event = rows_by_line(load_events(path), path)[target + 1][1]
    column = dict(identity_columns("dns", fields))
    answers_cell = cells[index["answers"]].decode()
    answers = event[column["answers"]]
    assert len(answers) == answers_cell.count(",") + 1
    assert any("," in answer for answer in answers)
    assert event[column["qclass_name"]] == "-"
    assert event[column["label"]] == "(empty)"
    assert "\u2019" in event[column["query"]]
    check_against_tsv(path)


def _remark(data: bytes, set_separator: bytes, empty: bytes, unset: bytes) -> bytes:
    """The same log written with other markers (as ``LogAscii::set_separator`` etc. do)."""
    sections = read_zeek_tsv(data)
    assert len(sections) == 1
    containers = {i for i, t in enumerate(sections[0].types) if _CONTAINER.match(t)}
    replaced = {
        b"#set_separator": b"#set_separator\t" + set_separator,
        b"#empty_field": b"#empty_field\t" + empty,
        b"#unset_field": b"#unset_field\t" + unset,
    }
    out = []
    for line in data.split(b"\n"):
        key = line.split(b"\t", 1)[0]
        if key in replaced:
            out.append(replaced[key])
            continue
        if not line or line.startswith(b"#"):
            out.append(line)
            continue
        cells = line.split(b"\t")
        for i, cell in enumerate(cells):
            assert set_separator not in cell
            assert cell not in (empty, unset)
            if cell == b"-":
                cells[i] = unset
            elif cell == b"(empty)":
                cells[i] = empty
            elif i in containers:
                cells[i] = cell.replace(b",", set_separator)
        out.append(b"\t".join(cells))
    return b"\n".join(out)


def test_header_markers_are_taken_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "dns.log"
    path.write_bytes(_remark(MDNS.read_bytes(), b";", b"<nothing>", b"<unset>"))
    assert check_against_tsv(path) > 0
    assert_same_events(load_events(MDNS), load_events(path))


def test_a_separator_other_than_tab(tmp_path: Path) -> None:
    lines = MDNS.read_bytes().split(b"\n")
    assert all(b"|" not in line for line in lines)
    piped = [b"#separator \\x7c", *(line.replace(b"\t", b"|") for line in lines[1:])]
    path = tmp_path / "dns.log"
    path.write_bytes(b"\n".join(piped))
    assert_same_events(load_events(MDNS), load_events(path))


def test_close_lines_are_skipped_not_rejected() -> None:
    loaded = load_events(MDNS)
    assert not loaded.rejects
    close = MDNS.read_bytes().count(b"\n") + 1
    assert close not in rows_by_line(loaded, MDNS)
    assert sum(t.num_rows for t in loaded.streams.values()) == len(data_lines(MDNS))


@pytest.mark.parametrize("limits", [ReadLimits(), TINY], ids=["one-block", "4k-blocks"])
def test_a_second_header_applies_to_the_lines_after_it(tmp_path: Path, limits: ReadLimits) -> None:
    """Two logs with different columns concatenated: each part reads as it does alone."""
    second = shared("stratosphere-ctu-zeek", "006-zeek-scenario-ssh", "ssh.log")
    first_bytes = MDNS.read_bytes() + b"\n"  # the excerpt ends without a newline
    path = tmp_path / "concatenated.log"
    path.write_bytes(first_bytes + second.read_bytes())
    both = load_events(path, limits=limits)
    assert not both.rejects
    assert set(both.streams) == {"zeek.dns", "zeek.ssh"}
    assert check_against_tsv(path) > 0
    for part in (MDNS, second):
        alone = load_events(part)
        (stream,) = alone.streams
        assert_same_events(
            alone, Loaded({stream: both.stream(stream)}), drop=(*ORIGIN, "furui.line")
        )


@pytest.mark.parametrize("source", [MDNS, UNANSWERED_JSON, EVE], ids=lambda p: p.name)
def test_crlf_line_endings(source: Path, tmp_path: Path) -> None:
    path = tmp_path / source.name
    path.write_bytes(source.read_bytes().replace(b"\n", b"\r\n"))
    if source is MDNS:
        assert check_against_tsv(path) > 0
    assert_same_events(load_events(source), load_events(path))


@pytest.mark.parametrize("source", [MDNS, EVE], ids=lambda p: p.name)
def test_a_byte_order_mark_is_not_a_record(source: Path, tmp_path: Path) -> None:
    """A log re-saved by a Windows tool starts with a UTF-8 BOM; it is not part of line 1."""
    path = tmp_path / source.name
    path.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    assert_same_events(load_events(source), load_events(path))


def test_last_line_without_newline(tmp_path: Path) -> None:
    lines = MDNS.read_bytes().split(b"\n")
    assert lines[-1].startswith(b"#close")
    path = tmp_path / "dns.log"
    path.write_bytes(b"\n".join(lines[:-1]))  # #close dropped: the file ends in a data row
    assert not path.read_bytes().endswith(b"\n")
    assert check_against_tsv(path) > 0
    assert_same_events(load_events(MDNS), load_events(path))


# -- Zeek JSON --------------------------------------------------------------------------------


def _iso_to_epoch(text: str) -> Decimal:
    stamp = datetime.fromisoformat(text)
    delta = stamp - _EPOCH
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 10**6


def _epoch_to_iso(value: float) -> str:
    micros = int(Decimal(repr(value)) * 10**6)
    return (_EPOCH + timedelta(microseconds=micros)).isoformat().replace("+00:00", "Z")


def _rewrite_json(source: Path, target: Path, change: Callable[[dict[str, Any]], None]) -> None:
    out = []
    for line in source.read_bytes().splitlines():
        record = json.loads(line)
        change(record)
        out.append(json.dumps(record, separators=(",", ":")))
    target.write_text("\n".join(out) + "\n", encoding="utf-8")


def test_epoch_and_iso_ts_give_the_same_timestamp(tmp_path: Path) -> None:
    """Zeek writes times as epoch numbers or, with JSON::TS_ISO8601, as ISO 8601 text."""
    epoch = tmp_path / "dns.json"

    def to_epoch(record: dict[str, Any]) -> None:
        for key in ("ts", "_write_ts"):
            record[key] = float(_iso_to_epoch(record[key]))

    _rewrite_json(UNANSWERED_JSON, epoch, to_epoch)
    iso_events, epoch_events = load_events(UNANSWERED_JSON), load_events(epoch)
    assert_same_events(iso_events, epoch_events)
    stamps = iso_events.stream("zeek.dns").column("@timestamp").to_pylist()
    expected = [
        datetime.fromisoformat(json.loads(line)["ts"])
        for line in UNANSWERED_JSON.read_bytes().splitlines()
    ]
    assert stamps == expected


def test_iso_ts_of_an_epoch_log(tmp_path: Path) -> None:
    source = shared("stratosphere-ctu-zeek", "002-zeek-scenario-port-scanning", "conn.log")
    head = tmp_path / "head" / "conn.log"
    head.parent.mkdir()
    head.write_bytes(b"".join(source.read_bytes().splitlines(keepends=True)[:500]))
    iso = tmp_path / "iso" / "conn.log"
    iso.parent.mkdir()

    def to_iso(record: dict[str, Any]) -> None:
        record["ts"] = _epoch_to_iso(record["ts"])

    _rewrite_json(head, iso, to_iso)
    assert_same_events(load_events(head), load_events(iso))


def test_unset_fields_absent_from_json_are_null_columns() -> None:
    """A key Zeek left out of every JSON line still becomes a (null) column of its type."""
    records = [json.loads(line) for line in UNANSWERED_JSON.read_bytes().splitlines()]
    (section,) = read_zeek_tsv(UNANSWERED_TSV.read_bytes())
    absent = [f for f in section.fields if all(f not in r for r in records)]
    assert {"rtt", "answers", "TTLs"} <= set(absent)
    tsv, js = load_events(UNANSWERED_TSV), load_events(UNANSWERED_JSON)
    assert_same_events(tsv, js, drop=(*ORIGIN, "furui.line"))
    table = js.stream("zeek.dns")
    columns = dict(identity_columns("dns", section.fields))
    for name in absent:
        column = columns[name]
        assert column in table.column_names, name
        assert table.column(column).null_count == table.num_rows, name
    assert table.schema.field(columns["TTLs"]).type == pa.list_(pa.float64())


# -- Suricata eve -----------------------------------------------------------------------------

_STATS_TIMES: Final = (
    "2021-06-06T15:57:38.000217+0200",
    "2021-06-06T16:15:21.000105+0200",
    "2021-06-07T15:55:02.000311+0200",
)


def _stats_line(timestamp: str, uptime: int) -> bytes:
    # The dataset has no stats events. This is the shape Suricata's eve stats logger writes
    # (timestamp and event_type, then counters under "stats": uptime, capture, decoder …),
    # with the counters abridged; their values do not matter, the event type does.
    return json.dumps(
        {
            "timestamp": timestamp,
            "event_type": "stats",
            "stats": {
                "uptime": uptime,
                "capture": {"kernel_packets": 5000, "kernel_drops": 0, "errors": 0},
                "decoder": {"pkts": 5000, "bytes": 2784811, "ipv4": 5000, "tcp": 3512},
            },
        },
        separators=(",", ":"),
    ).encode()


def test_stats_events_are_skipped_not_rejected(run: Runner, tmp_path: Path) -> None:
    lines = EVE.read_bytes().splitlines()
    mixed = [_stats_line(_STATS_TIMES[0], 8), *lines[:17], _stats_line(_STATS_TIMES[1], 1063)]
    mixed += [*lines[17:], _stats_line(_STATS_TIMES[2], 86244)]
    path = tmp_path / "eve.json"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    report = run([path])
    (file,) = report.files
    assert (file.skipped, file.rejects, file.events) == (3, 0, len(lines))
    assert not report.quarantine
    loaded = load_events(path)
    assert not any(stream.endswith(".stats") for stream in loaded.streams)
    assert sum(t.num_rows for t in loaded.streams.values()) == len(lines)


def _real_dns() -> list[dict[str, Any]]:
    return [
        r
        for r in (json.loads(line) for line in EVE.read_bytes().splitlines())
        if r["event_type"] == "dns"
    ]


def _ips(answers: list[dict[str, Any]]) -> list[str]:
    return [a["rdata"] for a in answers if a.get("rrtype") in ("A", "AAAA")]


def _expect(name: str, rrtype: str, ips: list[str] | None) -> dict[str, Any]:
    return {"dns.question.name": name, "dns.question.type": rrtype, "dns.resolved_ip": ips}


def _v2(record: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The real events (Suricata 5–7, ``version 2``; queries look as in version 1)."""
    dns = record["dns"]
    ips = _ips(dns["answers"]) if "answers" in dns else None  # a query: nothing answered
    yield record, _expect(dns["rrname"], dns["rrtype"], ips)


def _v2_grouped(record: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Derived: the answer as ``formats: [grouped]`` writes it (``answers`` left out)."""
    dns = record["dns"]
    if dns["type"] == "answer":
        grouped = {**record, "dns": {k: v for k, v in dns.items() if k != "answers"}}
        ips = dns["grouped"].get("A", []) + dns["grouped"].get("AAAA", [])
        yield grouped, _expect(dns["rrname"], dns["rrtype"], ips)


def _v2_detailed(record: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Derived: the answer as ``formats: [detailed]`` writes it (``grouped`` left out)."""
    dns = record["dns"]
    if dns["type"] == "answer":
        detailed = {**record, "dns": {k: v for k, v in dns.items() if k != "grouped"}}
        yield detailed, _expect(dns["rrname"], dns["rrtype"], _ips(dns["answers"]))


def _v1(record: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Derived: the answer in the old eve DNS format (``version: 1``).

    Version 1 writes one event per answer record, with that record's ``rrname``, ``rrtype``,
    ``ttl`` and ``rdata`` in the ``dns`` object and no ``version`` key (Suricata user guide,
    eve-json-format.rst, "Example of a old DNS answer"). Only the dns object is reshaped.
    """
    dns = record["dns"]
    if dns["type"] != "answer":
        yield record, _expect(dns["rrname"], dns["rrtype"], None)
        return
    common = {k: dns[k] for k in ("id", "flags", "qr", "rd", "ra", "rcode")}
    for answer in dns["answers"]:
        one = {"type": "answer", **common, **answer}
        ips = [answer["rdata"]] if answer["rrtype"] in ("A", "AAAA") else []
        yield {**record, "dns": one}, _expect(answer["rrname"], answer["rrtype"], ips)


def _v3(record: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Derived: the event as Suricata 8 (eve dns ``version: 3``) writes it.

    Only the dns object is reshaped, as the Suricata 8.0 upgrade notes show
    (doc/userguide/upgrade/8.0-dns-logging-changes.rst): ``query``/``answer`` become
    ``request``/``response``, the question moves into ``queries[]``, answers stay in
    ``answers[]``. The request's flags are those of a plain recursive query (``100``, RD set,
    as the real response's ``rd: true`` says); Suricata 8 also makes the responder the
    ``src_ip`` of a response, which is left as it was since only the dns object matters here.
    The real answers carry no ``tx_id``, so the response has none either.
    """
    dns = record["dns"]
    question = [{"rrname": dns["rrname"], "rrtype": dns["rrtype"]}]
    if dns["type"] == "query":
        request = {
            "version": 3,
            "type": "request",
            "tx_id": dns["tx_id"],
            "id": dns["id"],
            "flags": "100",
            "rd": True,
            "opcode": 0,
            "rcode": "NOERROR",
            "queries": question,
        }
        yield {**record, "dns": request}, _expect(dns["rrname"], dns["rrtype"], None)
        return
    response = {
        "version": 3,
        "type": "response",
        "id": dns["id"],
        "flags": dns["flags"],
        "qr": dns["qr"],
        "rd": dns["rd"],
        "ra": dns["ra"],
        "opcode": 0,
        "rcode": dns["rcode"],
        "queries": question,
        "answers": dns["answers"],
    }
    yield {**record, "dns": response}, _expect(dns["rrname"], dns["rrtype"], _ips(dns["answers"]))


SHAPES: Final = {
    "v1": _v1,
    "v2": _v2,
    "v2-grouped": _v2_grouped,
    "v2-detailed": _v2_detailed,
    "v3": _v3,
}


def _check_dns(path: Path, cases: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    path.write_text("\n".join(json.dumps(r, separators=(",", ":")) for r, _ in cases) + "\n")
    loaded = load_events(path)
    assert not loaded.rejects, [r.reason for r in loaded.rejects]
    events = rows_by_line(loaded, path)
    assert sorted(events) == list(range(1, len(cases) + 1))
    for line, (_, expected) in enumerate(cases, start=1):
        stream, event = events[line]
        assert stream == "suricata.eve.dns"
        assert {k: event.get(k) for k in expected} == expected, f"line {line}"


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_eve_dns_versions_give_question_and_resolved_ips(shape: str, tmp_path: Path) -> None:
    cases = [case for record in _real_dns() for case in SHAPES[shape](record)]
    assert any(expected["dns.resolved_ip"] for _, expected in cases)
    _check_dns(tmp_path / "eve.json", cases)


def test_eve_dns_versions_mixed_in_one_file(tmp_path: Path) -> None:
    """A sensor upgraded mid-file: every shape in one block."""
    cases = [case for shape in SHAPES.values() for r in _real_dns() for case in shape(r)]
    _check_dns(tmp_path / "eve.json", cases)


# -- gzip, rotation, discovery ----------------------------------------------------------------


@pytest.mark.parametrize("source", [MDNS, UNANSWERED_JSON, EVE], ids=lambda p: p.name)
def test_gzip_reads_as_the_plain_file(source: Path, tmp_path: Path) -> None:
    compressed = tmp_path / f"{source.name}.gz"
    compressed.write_bytes(gzip.compress(source.read_bytes()))
    plain, packed = load_events(source), load_events(compressed)
    # offsets are in the decompressed content, so only the path may differ
    assert_same_events(plain, packed, drop=("log.file.path",))


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    """``cat a.gz b.gz`` is a valid gzip file: both members are read."""
    data = EVE.read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 1
    path = tmp_path / "eve.json.gz"
    path.write_bytes(gzip.compress(data[:cut]) + gzip.compress(data[cut:]))
    assert_same_events(load_events(EVE), load_events(path), drop=("log.file.path",))


def test_rotated_gzip_names_are_found_and_read(tmp_path: Path) -> None:
    json_conn = shared("stratosphere-ctu-zeek", "002-zeek-scenario-port-scanning", "conn.log")
    tsv_conn = shared("stratosphere-ctu-zeek", "006-zeek-scenario-ssh", "conn.log")
    root = tmp_path / "logs"
    rotated = {
        root / "2022-09-29" / "conn.00:00:00-01:00:00.log.gz": json_conn,
        root / "2020-07-27" / "conn.00:00:00-01:00:00.log.gz": tsv_conn,
    }
    for target, source in rotated.items():
        target.parent.mkdir(parents=True)
        target.write_bytes(gzip.compress(source.read_bytes()))
    found = discover([root])
    assert not found.skipped
    assert {log.path for log in found.logs} == set(rotated)
    # the JSON log has no _path: its type comes from the rotated name
    assert {log.log_type for log in found.logs} == {"conn"}
    loaded = load_events(root)
    assert not loaded.rejects
    for target, source in rotated.items():
        events = rows_by_line(loaded, target)
        assert sorted(events) == data_lines(source)
        assert {stream for stream, _ in events.values()} == {"zeek.connection"}


def test_a_live_log_and_its_rotated_copy_are_stored_once(run: Runner, tmp_path: Path) -> None:
    """Same content, two names (``conn.log`` and its compressed rotation): one file."""
    source = shared("stratosphere-ctu-zeek", "006-zeek-scenario-ssh", "conn.log")
    root = tmp_path / "logs"
    root.mkdir()
    (root / "conn.log").write_bytes(source.read_bytes())
    (root / "conn.00:00:00-01:00:00.log.gz").write_bytes(gzip.compress(source.read_bytes()))
    report = run([root])
    assert len(report.files) == 2
    assert report.events == len(data_lines(source))
    assert sorted(f.events for f in report.files) == [0, len(data_lines(source))]
    assert not report.rejects


def test_directory_walk_passes_over_other_files(run: Runner, tmp_path: Path) -> None:
    scenario = shared("stratosphere-ctu-zeek", "006-zeek-scenario-ssh")
    root = tmp_path / "sensor"
    shutil.copytree(scenario, root)
    shutil.copy(shared("stratosphere-ctu-zeek", "008-zeek-mixed", "labels.config"), root)
    expected_logs = {p for p in root.iterdir() if p.read_bytes().startswith(b"#separator")}
    expected_skipped = set(root.iterdir()) - expected_logs
    assert {p.name for p in expected_skipped} == {"README.md", "labels.config"}
    found = discover([root])
    assert {log.path for log in found.logs} == expected_logs
    assert {s.path for s in found.skipped} == expected_skipped
    assert all(s.reason for s in found.skipped)
    report = run([root])
    assert {Path(f.path) for f in report.files} == expected_logs
    assert {s.path for s in report.passed_over} == expected_skipped
    assert not report.rejects


def test_each_folders_conn_logs_are_read_after_its_other_logs(tmp_path: Path) -> None:
    """The flow model joins dns/ssl context to flows: conn comes last in each folder."""
    scenario = shared("stratosphere-ctu-zeek", "006-zeek-scenario-ssh")
    root = tmp_path / "sensor"
    for day in ("2020-07-27", "2020-07-28"):
        shutil.copytree(scenario, root / day)
    found = discover([root]).logs
    folders = [log.path.parent.name for log in found]
    assert folders == sorted(folders)  # folders stay in walk order, not interleaved
    for day in ("2020-07-27", "2020-07-28"):
        types = [log.log_type for log in found if log.path.parent.name == day]
        assert "conn" in types
        assert len(set(types)) > 1
        assert types[types.index("conn") :] == ["conn"] * types.count("conn")
        others = [t for t in types if t != "conn"]
        assert others == sorted(others)  # the rest keep name order


def _split_by_hour(source: Path, target: Path, stem: str) -> list[Path]:
    """A Zeek TSV log cut into hourly files named as Zeek rotates them."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    header = [line for line in lines if line.startswith("#") and not line.startswith("#close")]
    hours: dict[int, list[str]] = {}
    for line in lines:
        if not line.startswith("#"):
            hours.setdefault(int(float(line.split("\t", 1)[0]) // 3600), []).append(line)
    written = []
    for hour, rows in sorted(hours.items())[:3]:
        name = f"{stem}.{hour % 24:02d}:00:00-{hour % 24 + 1:02d}:00:00.log"
        (target / name).write_text("".join(header + rows), encoding="utf-8")
        written.append(target / name)
    return written


def test_rotated_logs_of_a_folder_are_read_conn_last(tmp_path: Path) -> None:
    """dns.00, dns.01 … then conn.00, conn.01 …: every hour's flows after their context."""
    capture = shared("stratosphere-ctu-zeek", "010-zeek-mixed", "data")
    root = tmp_path / "2022-06-13"
    root.mkdir()
    conns = _split_by_hour(capture / "conn.log.labeled", root, "conn")
    dnss = _split_by_hour(capture / "dns.log.labeled", root, "dns")
    assert len(conns) > 1
    assert len(dnss) > 1
    found = discover([root]).logs
    assert [log.path for log in found] == sorted(dnss) + sorted(conns)


def test_a_named_file_that_is_not_a_log_is_an_input_error(run: Runner) -> None:
    readme = shared("stratosphere-ctu-zeek", "006-zeek-scenario-ssh", "README.md")
    with pytest.raises(InputError, match=re.escape(str(readme))):
        discover([readme])
    with pytest.raises(InputError, match=re.escape(str(readme))):
        run([readme])


def test_two_files_that_begin_alike_are_both_read(run: Runner, tmp_path: Path) -> None:
    lines = EVE.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "case-1" / "eve.json", tmp_path / "case-2" / "eve.json"
    for path, part in ((first, lines[:20]), (second, lines[:2] + lines[20:])):
        path.parent.mkdir()
        path.write_bytes(b"".join(part))
    assert len(lines[0] + lines[1]) > 1024
    report = run([first, second])
    assert [(f.events, f.rejects) for f in report.files] == [(20, 0), (len(lines) - 18, 0)]


# -- block boundaries -------------------------------------------------------------------------

#: Files larger than this (decompressed) are cut to their first and last lines, so that
#: reading every shared log with 4 KiB blocks stays within the test budget.
_EXCERPT_BYTES: Final = 96 << 10
_TAIL_BYTES: Final = 12 << 10


def _excerpt(path: Path, tmp: Path) -> Path:
    raw = path.read_bytes()
    compressed = raw[:2] == b"\x1f\x8b"
    data = gzip.decompress(raw) if compressed else raw
    if len(data) <= _EXCERPT_BYTES + _TAIL_BYTES:
        return path
    head = data[: data.index(b"\n", _EXCERPT_BYTES) + 1]
    tail = data[data.index(b"\n", len(data) - _TAIL_BYTES) + 1 :]
    target = tmp / path.parent.name / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    cut = head + tail
    target.write_bytes(gzip.compress(cut) if compressed else cut)
    return target


_SHARED_LOGS: Final = [
    "zeek-wrccdc2018",
    "stratosphere-ctu-zeek",
    "stratosphere-ctu-sme-11-labelled",
    "suricata-eve-stratosphere-2021",
    "suricata-eve-ccdc-honeypot-alerts",
]


def _column_sorted(loaded: Loaded) -> dict[str, pa.Table]:
    return {s: t.select(sorted(t.column_names)) for s, t in loaded.streams.items()}


@pytest.mark.parametrize("dataset", _SHARED_LOGS)
def test_tiny_blocks_give_the_same_events(dataset: str, tmp_path: Path) -> None:
    logs = discover([shared(dataset)]).logs
    assert logs
    for log in logs:
        path = _excerpt(log.path, tmp_path)
        whole, tiny = load_events(path), load_events(path, limits=TINY)
        assert [r.location for r in whole.rejects] == [r.location for r in tiny.rejects]
        # every column, type, value and row order; column order is the next test's subject
        assert _column_sorted(whole) == _column_sorted(tiny), path
        events = sum(t.num_rows for t in whole.streams.values())
        assert events + len(whole.rejects) == len(data_lines(path)), path


def test_tiny_blocks_give_the_same_column_order() -> None:
    whole, tiny = load_events(EVE), load_events(EVE, limits=TINY)
    assert whole.streams.keys() == tiny.streams.keys()
    for stream in whole.streams:
        assert whole.stream(stream).column_names == tiny.stream(stream).column_names, stream


# -- resume -----------------------------------------------------------------------------------


def _without_nulls(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _records_of(blocks: list[BlockRead]) -> dict[int, object]:
    """The parsed record of every line, as read (before normalisation), by line."""
    records: dict[int, object] = {}
    for block in blocks:
        assert not block.rejects
        for raw in block.batches:
            for line, row in zip(raw.lines.to_pylist(), raw.table.to_pylist(), strict=True):
                assert line not in records
                records[line] = (raw.log_type, _without_nulls(row))
    return records


def _lines_read(blocks: list[BlockRead]) -> list[int]:
    return [n for b in blocks for raw in b.batches for n in raw.lines.to_pylist()]


@pytest.mark.parametrize(
    ("source", "compress"),
    [(MDNS, False), (MDNS, True), (UNANSWERED_JSON, False), (EVE, False), (EVE, True)],
    ids=["tsv", "tsv-gzip", "zeek-json", "eve", "eve-gzip"],
)
def test_resume_after_block_k_reads_exactly_the_rest(
    source: Path, compress: bool, tmp_path: Path
) -> None:
    path = tmp_path / (source.name + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(source.read_bytes()) if compress else source.read_bytes())
    found = recognise(path)
    assert isinstance(found, LogFile)
    blocks = list(read_log(found, Position(), TINY))
    assert len(blocks) >= 2
    assert _lines_read(blocks) == data_lines(source)
    full = _records_of(blocks)
    for k in range(len(blocks) - 1):
        position = blocks[k].position
        rest = list(read_log(found, position, TINY))
        remaining = [n for n in data_lines(source) if n >= position.line]
        assert _lines_read(rest) == remaining, f"after block {k}"
        expected = {n: r for n, r in full.items() if n >= position.line}
        assert _records_of(rest) == expected, f"after block {k}"
    end = blocks[-1].position
    assert not _lines_read(list(read_log(found, end, TINY)))
    assert found.format in (LogFormat.ZEEK_TSV, LogFormat.ZEEK_JSON, LogFormat.SURICATA_EVE)


def test_stream_counts_sum_to_the_lines() -> None:
    """Every line of the eve excerpt becomes one event of its own event type."""
    loaded = load_events(EVE)
    kinds = Counter(json.loads(line)["event_type"] for line in EVE.read_bytes().splitlines())
    assert {s: t.num_rows for s, t in loaded.streams.items()} == {
        f"suricata.eve.{kind}": count for kind, count in kinds.items()
    }
