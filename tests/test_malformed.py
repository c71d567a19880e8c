"""Bad input on real lines: counted, quarantined with file, line and reason; the run goes on.

The fixtures in ``tests/data/malformed/`` are real excerpts with one kind of damage each
(their README says which line and how). What a test expects is read from the fixture
itself: its record lines, minus the damaged ones the README names.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final

import pytest

from correlator.pipeline import FileReport, RunReport
from correlator.settings import Settings
from correlator.state import Store
from tests.conftest import DATA, Runner
from tests.test_readers import check_against_tsv, data_lines

MALFORMED: Final = DATA / "malformed"
#: A clean log read in the same runs: it must come through whole whatever its neighbours do.
COMPANION: Final = DATA / "zeek" / "dns-unanswered.log"
SMALLEST_LINE_LIMIT: Final = 4096


@dataclass(frozen=True)
class Case:
    """A damaged fixture: the lines that must be quarantined, and what their reason names."""

    file: str
    bad: dict[int, str]  # line → regex the reason must match
    ingest: dict[str, int] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return MALFORMED / self.file


_LONG: Final = {"max_line_bytes": SMALLEST_LINE_LIMIT}

CASES: Final = [
    Case("eve-truncated-line.json", {2: r"invalid JSON"}),
    Case("eve-array-line.json", {2: r"not a JSON object"}),
    Case("eve-bad-timestamp.json", {2: r"timestamp.*2021-06-06T25:61:07"}),
    Case("eve-binary-line.json", {2: r"not UTF-8"}),
    Case("eve-long-line.json", {2: rf"longer than {SMALLEST_LINE_LIMIT} bytes"}, _LONG),
    Case("eve-bad-port.json", {2: r"src_port"}),
    Case("conn-wrong-columns.log", {10: r"expected 21 fields, found 19", 15: r"found 22"}),
    Case("conn-bad-ts.log", {10: r"\bts\b.*1595853x56\.931187"}),
    Case("conn-binary-line.log", {10: r"not UTF-8"}),
    Case("conn-bad-port.log", {10: r"id\.orig_p.*abc"}),
    Case("conn-long-line.log", {10: rf"longer than {SMALLEST_LINE_LIMIT} bytes"}, _LONG),
    Case("truncated-line-conn.json", {2: r"invalid JSON"}),
    Case("bad-ts-conn.json", {2: r"\bts\b.*2022-09-29T25:61"}),
    Case("bad-port-conn.json", {2: r"id\.orig_p"}),
]


def _param(case: Case) -> object:
    return pytest.param(case, id=case.file)


def _file(report: RunReport, path: Path) -> FileReport:
    (found,) = [f for f in report.files if f.path == str(path)]
    return found


def stored_lines(db: Path, path: Path) -> list[int]:
    """Line numbers of the events stored from ``path``, one per event, in order."""
    lines: list[int] = []
    with Store.open(db) as store:
        for table in store.event_tables():
            rows = store.query(
                f'SELECT "furui.line" AS line FROM {table} WHERE "log.file.path" = '
                f"'{str(path).replace(chr(39), chr(39) * 2)}'"
            )
            lines.extend(rows.column("line").to_pylist())
    return sorted(lines)


def line_offset(path: Path, line: int) -> int:
    """Byte offset of ``line`` (1-based) in an uncompressed file."""
    return sum(len(text) + 1 for text in path.read_bytes().split(b"\n")[: line - 1])


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_record_is_quarantined_and_the_rest_is_stored_once(
    case: Case, run: Runner, settings: Settings
) -> None:
    records = data_lines(case.path)
    assert set(case.bad) <= set(records), "the README's bad lines are record lines"
    valid = [n for n in records if n not in case.bad]

    report = run([case.path, COMPANION], **case.ingest)

    damaged = _file(report, case.path)
    assert (damaged.rejects, damaged.events, damaged.error) == (len(case.bad), len(valid), None)
    companion = _file(report, COMPANION)
    assert (companion.rejects, companion.events) == (0, len(data_lines(COMPANION)))

    quarantined = [q for q in report.quarantine if q["path"] == str(case.path)]
    assert len(quarantined) == len(report.quarantine) == len(case.bad)
    for entry in quarantined:
        line = entry["line"]
        assert isinstance(line, int)
        assert line in case.bad
        assert re.search(case.bad[line], str(entry["reason"])), entry["reason"]
        assert entry["offset"] == line_offset(case.path, line)
    assert {q["line"] for q in quarantined} == set(case.bad)

    assert stored_lines(settings.store.path, case.path) == valid


def test_unknown_zeek_log_type_is_kept_generically(run: Runner, settings: Settings) -> None:
    path = MALFORMED / "unknown-type.log"
    report = run([path, COMPANION])
    file = _file(report, path)
    assert (file.log_type, file.rejects, file.events) == ("custom_ssh", 0, len(data_lines(path)))
    assert not report.quarantine
    with Store.open(settings.store.path) as store:
        assert store.event_count("zeek.custom_ssh") == len(data_lines(path))
    assert stored_lines(settings.store.path, path) == data_lines(path)
    assert check_against_tsv(path) > 0  # typed by its #types like any other log


def test_unknown_zeek_json_log_type_is_kept_generically(run: Runner, settings: Settings) -> None:
    path = MALFORMED / "unknown-type.json"
    report = run([path, COMPANION])
    file = _file(report, path)
    assert (file.log_type, file.rejects, file.events) == ("custom_ssh", 0, len(data_lines(path)))
    assert stored_lines(settings.store.path, path) == data_lines(path)
    # with no schema to go by, ts is still read as the epoch time it is
    expected = [
        datetime.fromtimestamp(0, UTC)
        + timedelta(microseconds=int(json.loads(line, parse_float=Decimal)["ts"] * 10**6))
        for line in path.read_bytes().splitlines()
    ]
    with Store.open(settings.store.path) as store:
        stamps = store.query(
            'SELECT "@timestamp" AS t FROM events_zeek_custom_ssh ORDER BY "furui.line"'
        )
    assert stamps.column("t").to_pylist() == expected


# -- truncated gzip ---------------------------------------------------------------------------

TRUNCATED: Final = MALFORMED / "conn-truncated.log.gz"
TRUNCATED_EARLY: Final = MALFORMED / "conn-truncated-early.log.gz"


def whole_lines_before_damage(path: Path) -> tuple[list[int], int]:
    """Record lines that are complete before the damage, and the number of the cut line."""
    readable = zlib.decompressobj(31).decompress(path.read_bytes())
    lines = readable.split(b"\n")
    whole = [
        number
        for number, line in enumerate(lines[:-1], start=1)
        if line and not line.startswith(b"#")
    ]
    return whole, len(lines)


def test_fixture_truncated_gzip_is_damaged_where_the_readme_says() -> None:
    data = TRUNCATED.read_bytes()
    reader = zlib.decompressobj(31)
    readable = reader.decompress(data)
    assert not reader.eof  # no end-of-stream marker: the file is cut
    assert len(readable) > 65536
    whole, cut = whole_lines_before_damage(TRUNCATED)
    assert cut == 423
    assert whole == list(range(9, 423))


def test_truncated_gzip_reports_an_error_and_stores_no_damaged_line(
    run: Runner, settings: Settings
) -> None:
    """The file reports its error, the run goes on, nothing past the damage is stored."""
    whole, cut = whole_lines_before_damage(TRUNCATED)
    report = run([TRUNCATED, COMPANION])
    file = _file(report, TRUNCATED)
    assert file.status == "error"
    assert file.error
    companion = _file(report, COMPANION)
    assert companion.events == len(data_lines(COMPANION))
    stored = stored_lines(settings.store.path, TRUNCATED)
    assert len(stored) == len(set(stored)) == file.events
    assert set(stored) <= set(whole)
    assert cut not in stored


@pytest.mark.parametrize("block_bytes", [8 << 20, 4096], ids=["default-block", "4k-blocks"])
def test_truncated_gzip_keeps_every_whole_line_before_the_damage(
    run: Runner, settings: Settings, block_bytes: int
) -> None:
    whole, cut = whole_lines_before_damage(TRUNCATED)
    report = run([TRUNCATED, COMPANION], block_bytes=block_bytes)
    file = _file(report, TRUNCATED)
    assert file.status == "error"
    assert stored_lines(settings.store.path, TRUNCATED) == whole
    assert file.events == len(whole)
    assert {q["line"] for q in report.quarantine} <= {cut}


def test_gzip_truncated_early_does_not_stop_the_run(
    run: Runner, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    shutil.copy(TRUNCATED_EARLY, folder)
    shutil.copy(COMPANION, folder)
    damaged, companion_copy = folder / TRUNCATED_EARLY.name, folder / COMPANION.name
    whole, _ = whole_lines_before_damage(damaged)
    report = run([folder])
    assert _file(report, damaged).status == "error"
    assert _file(report, companion_copy).events == len(data_lines(COMPANION))
    assert stored_lines(settings.store.path, damaged) == whole


# -- the quarantine file the command line writes ----------------------------------------------

#: Clean logs of an unknown type, read in the same run: they add nothing to the quarantine.
UNKNOWN_TYPES: Final = [MALFORMED / "unknown-type.log", MALFORMED / "unknown-type.json"]


@dataclass(frozen=True)
class CliRun:
    """One ``furui analyze`` over a folder of damaged logs, and what it wrote."""

    logs: Path
    result: subprocess.CompletedProcess[str]
    entries: list[dict[str, object]]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    tmp = tmp_path_factory.mktemp("cli")
    logs = tmp / "logs"
    logs.mkdir()
    for path in [*(case.path for case in CASES), *UNKNOWN_TYPES, COMPANION]:
        shutil.copy(path, logs)
    site = tmp / "site.toml"  # the long-line cases need the smallest line limit
    site.write_text(f"[ingest]\nmax_line_bytes = {SMALLEST_LINE_LIMIT}\n", encoding="utf-8")
    quarantine = tmp / "quarantine.ndjson"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "correlator",
            "analyze",
            str(logs),
            "--db",
            str(tmp / "furui.duckdb"),
            "--output",
            str(tmp / "out.ndjson"),
            "--quarantine",
            str(quarantine),
            "--config",
            str(site),
            "--no-progress",
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    return CliRun(logs, result, entries)


def test_cli_writes_file_line_and_reason_to_the_quarantine(cli_run: CliRun) -> None:
    """``furui analyze`` over a folder of damaged logs: every bad record in the NDJSON."""
    patterns = {(str(cli_run.logs / c.file), line): rx for c in CASES for line, rx in c.bad.items()}
    found = [(e["file"], e["line"]) for e in cli_run.entries]
    assert sorted(found) == sorted(patterns)
    for entry in cli_run.entries:
        file, line = Path(str(entry["file"])), entry["line"]
        assert isinstance(line, int)
        assert re.search(patterns[str(file), line], str(entry["reason"])), entry
        assert entry["offset"] == line_offset(file, line)
        if "text_base64" in entry:  # not UTF-8: kept as base64, byte for byte
            original = file.read_bytes().split(b"\n")[line - 1]
            assert base64.b64decode(str(entry["text_base64"])) == original
    summary = re.search(r"([\d,]+) malformed records", cli_run.result.stdout)
    assert summary, cli_run.result.stdout
    assert int(summary.group(1).replace(",", "")) == len(cli_run.entries)


def test_cli_quarantine_keeps_the_raw_line(cli_run: CliRun) -> None:
    assert cli_run.entries
    differ = []
    for entry in cli_run.entries:
        file, line = Path(str(entry["file"])), entry["line"]
        assert isinstance(line, int)
        original = file.read_bytes().split(b"\n")[line - 1]
        kept = (
            base64.b64decode(str(entry["text_base64"]))
            if "text_base64" in entry
            else str(entry["text"]).encode()
        )
        # the raw line, or for a line over the limit its first 4 KiB (it is never held whole)
        kept = kept.removesuffix(b"\n")
        if kept != original[: len(kept)] or len(kept) < min(len(original), 4096):
            differ.append((file.name, line, kept[:40]))
    assert not differ
