"""The ``furui`` command line, run as a user runs it: a real process over real logs.

Each command runs ``python -m correlator`` in a temporary folder with its own store and
output files, and a clean environment (no ``FURUI_*`` variables, no terminal width).
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pytest

from correlator.engine.loader import load_rules
from correlator.sources.files import LogFile, discover
from correlator.state import Store
from tests.conftest import DATA, REPO

EXAMPLES: Final = REPO / "examples"
#: Severity bands of event.risk_score: low below 22, medium from 22, high from 48,
#: critical from 74 (Elastic's detection-rule bands).
BANDS: Final = ((74.0, "critical"), (48.0, "high"), (22.0, "medium"), (0.0, "low"))

Doc = dict[str, Any]


def furui(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script as a user would, with a clean environment."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FURUI_") and k not in ("COLUMNS", "LINES")
    }
    return subprocess.run(
        [sys.executable, "-m", "correlator", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def band(score: float) -> str:
    return next(name for floor, name in BANDS if score >= floor)


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def read_ndjson(path: Path) -> list[Doc]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def event_count(db: Path) -> int:
    with Store.open(db) as store:
        return store.event_count()


# -- help and usage ---------------------------------------------------------------------------


def test_help_names_the_commands(tmp_path: Path) -> None:
    done = furui("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("analyze", "incidents", "settings"):
        assert re.search(rf"\b{command}\b", done.stdout), command


def test_analyze_help_names_its_options(tmp_path: Path) -> None:
    done = furui("analyze", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    options = ("--db", "--output", "--quarantine", "--top", "--json", "--no-progress", "--config")
    for option in options:
        assert option in done.stdout, option


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("analyze", "--no-such-option", str(EXAMPLES)), "No such option: --no-such-option"),
        (("analyze",), "Missing argument"),
        (("incidents", "status", "0" * 32, "done"), "open, acknowledged, closed"),
    ],
    ids=["unknown-option", "no-paths", "unknown-status"],
)
def test_usage_errors(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    done = furui(*args, "--db", "x.duckdb", cwd=tmp_path)
    assert done.returncode == 2
    assert says in " ".join(done.stderr.replace("│", " ").split())
    assert not (tmp_path / "x.duckdb").exists()


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    missing = "sensor/eve.json"
    done = furui("analyze", missing, "--db", "x.duckdb", cwd=tmp_path)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert missing in lines[0]
    assert "Traceback" not in done.stderr


def test_a_named_file_that_is_not_a_log_is_an_input_error(tmp_path: Path) -> None:
    done = furui("analyze", str(EXAMPLES / "README.md"), "--db", "x.duckdb", cwd=tmp_path)
    assert done.returncode == 3
    message = " ".join(done.stderr.split())
    assert message.startswith(f"furui: error: {EXAMPLES / 'README.md'}:"), message
    assert "Traceback" not in done.stderr


def test_error_stays_on_one_line_for_a_long_path(tmp_path: Path) -> None:
    missing = "sensors/" + "zeek-" * 12 + "logs/eve.json"
    done = furui("analyze", missing, "--db", "x.duckdb", cwd=tmp_path)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert missing in lines[0]


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("[network\ninternal = [\n", "not valid TOML"),
        ("[ingest]\nblock_bytes = 10\n", "block_bytes"),
        ('[correlation]\ninbound_factor = "half"\n', "inbound_factor"),
        ("[ingst]\nblock_bytes = 65536\n", "ingst"),
    ],
    ids=["invalid-toml", "too-small", "wrong-type", "unknown-section"],
)
def test_bad_config_is_a_config_error(tmp_path: Path, text: str, what: str) -> None:
    config = tmp_path / "site.toml"
    config.write_text(text, encoding="utf-8")
    done = furui(
        "analyze",
        str(DATA / "zeek" / "dns-unanswered.log"),
        "--config",
        config.name,
        "--db",
        "x.duckdb",
        "--no-progress",
        cwd=tmp_path,
    )
    assert done.returncode == 4, done.stderr
    message = " ".join(done.stderr.split())  # the wrapping is another test's subject
    assert message.startswith("furui: error: site.toml:"), message
    assert what in message
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.duckdb").exists()


# -- furui analyze examples/ ------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleRuns:
    """Two runs over the repository's examples with one store: a table, then ``--json``."""

    folder: Path
    db: Path
    table: subprocess.CompletedProcess[str]
    documents: list[Doc]
    events_after_first: int
    second: subprocess.CompletedProcess[str]
    events_after_second: int


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> ExampleRuns:
    folder = tmp_path_factory.mktemp("examples-run")
    db = folder / "lab.duckdb"
    # a wide terminal, so that the table can be read back
    table = furui(
        "analyze",
        f"{EXAMPLES}/",
        "--db",
        str(db),
        "--output",
        "incidents.ndjson",
        cwd=folder,
        env={"COLUMNS": "220"},
    )
    assert table.returncode == 0, table.stderr
    after_first = event_count(db)
    documents = read_ndjson(folder / "incidents.ndjson")
    second = furui(
        "analyze",
        f"{EXAMPLES}/",
        "--db",
        str(db),
        "--output",
        "again.ndjson",
        "--json",
        cwd=folder,
    )
    assert second.returncode == 0, second.stderr
    return ExampleRuns(folder, db, table, documents, after_first, second, event_count(db))


def test_examples_give_incidents(examples: ExampleRuns) -> None:
    records = discover([EXAMPLES]).logs
    assert examples.events_after_first > 0
    assert examples.documents
    summary = re.search(
        r"Read ([\d,]+) events from (\d+) files.*?(\d+) incidents written to incidents\.ndjson",
        examples.table.stdout,
        re.DOTALL,
    )
    assert summary, examples.table.stdout
    assert int(summary.group(1).replace(",", "")) == examples.events_after_first
    assert int(summary.group(2)) == len(records)
    assert int(summary.group(3)) == len(examples.documents)


def test_examples_table_shows_the_riskiest_incidents(examples: ExampleRuns) -> None:
    stdout = examples.table.stdout
    assert f"Incidents ({len(examples.documents)}, riskiest first)" in stdout
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in stdout.splitlines()
        if line.startswith("│")
    ]
    shown = [(row[0], row[1], row[2]) for row in rows if row[0]]
    expected = [
        (f"{d['event']['risk_score']:.0f}", d["furui"]["severity"], d["host"]["ip"])
        for d in examples.documents[: len(shown)]
    ]
    assert len(shown) == min(20, len(examples.documents))
    assert shown == expected
    if len(examples.documents) > 20:
        assert f"{len(examples.documents) - 20} more" in stdout


def _lines_by_key() -> dict[str, list[bytes]]:
    """The example logs by file identity, decompressed and split into lines."""
    out: dict[str, list[bytes]] = {}
    for log in discover([EXAMPLES]).logs:
        assert isinstance(log, LogFile)
        raw = log.path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        out[log.identity.key] = data.split(b"\n")
    return out


def test_incident_documents(examples: ExampleRuns) -> None:
    """Every document: ids, score and band, times, hosts, and evidence back to its lines."""
    lines = _lines_by_key()
    ids = [d["event"]["id"] for d in examples.documents]
    assert len(set(ids)) == len(ids)
    scores = [d["event"]["risk_score"] for d in examples.documents]
    assert scores == sorted(scores, reverse=True)
    checked_references = 0
    for doc in examples.documents:
        score, host = doc["event"]["risk_score"], doc["host"]["ip"]
        assert 0 <= score <= 100
        assert doc["furui"]["severity"] == band(score)
        assert ipaddress.ip_address(host).is_private  # the default internal networks
        assert host in doc["related"]["ip"]
        start, end = stamp(doc["@timestamp"]), stamp(doc["event"]["end"])
        assert start <= end
        window = doc["furui"]["window"]
        assert stamp(window["start"]) <= start < stamp(window["end"])
        evidence = doc["furui"]["evidence"]
        assert evidence
        assert min(stamp(e["first_seen"]) for e in evidence) == start
        assert max(stamp(e["last_seen"]) for e in evidence) == end
        assert doc["furui"]["findings"] == sum(e["count"] for e in evidence)
        # risk is a noisy-OR led by the strongest evidence: never below it
        assert score >= max(e["score"] for e in evidence) - 0.01
        for item in evidence:
            rule = item["rule"]
            assert rule["id"]
            assert rule["name"]
            assert item["count"] >= 1
            assert stamp(item["first_seen"]) <= stamp(item["last_seen"])
            references = item["references"]
            event_ids = references["event"]["id"]
            assert 1 <= len(event_ids) <= item["count"]
            assert set(item["peers"]) <= set(doc["related"]["ip"])
            for event_id in event_ids:
                key, line = event_id.rsplit(":", 1)
                text = lines[key][int(line) - 1].decode()
                # the referenced record names this host and this rule
                assert host in text, (event_id, host)
                if rule["ruleset"] == "suricata":
                    assert json.loads(text)["alert"]["signature_id"] == int(rule["id"])
                    assert (
                        str(json.loads(text)["flow_id"])
                        in (references["suricata"]["eve"]["flow_id"])
                    )
                elif rule["ruleset"] == "furui":
                    # a heuristic rule's id is its UUID, which no log record holds
                    assert rule["id"] in {r.id for r in load_rules().rules}
                elif rule["ruleset"] == "ml":
                    # the model's evidence is named after the shipped bundle, and is a flow
                    assert rule["id"].startswith("flow-classifier@")
                    assert key in lines
                else:
                    assert rule["id"] in text.split("\t")
                checked_references += 1
    assert checked_references >= len(examples.documents)


def test_json_output_has_the_same_incidents(examples: ExampleRuns) -> None:
    payload = json.loads(examples.second.stdout)
    assert payload["incident_count"] == len(payload["incidents"]) == len(examples.documents)

    def comparable(doc: Doc) -> Doc:
        # the second run rewrote every incident: only its update time may differ
        return {**doc, "furui": {k: v for k, v in doc["furui"].items() if k != "updated_at"}}

    assert [comparable(d) for d in payload["incidents"]] == [
        comparable(d) for d in examples.documents
    ]
    again = read_ndjson(examples.folder / "again.ndjson")
    assert [comparable(d) for d in again] == [comparable(d) for d in examples.documents]


def test_second_run_finds_files_unchanged_and_adds_nothing(examples: ExampleRuns) -> None:
    payload = json.loads(examples.second.stdout)
    files = payload["files"]
    assert {f["path"] for f in files} == {str(log.path) for log in discover([EXAMPLES]).logs}
    assert {f["status"] for f in files} == {"unchanged"}
    assert payload["events"] == 0
    assert sum(f["events"] for f in files) == 0
    assert examples.events_after_second == examples.events_after_first
    assert [p["path"] for p in payload["passed_over"]] == [str(EXAMPLES / "README.md")]


def test_incident_table_keeps_addresses_whole_when_piped(examples: ExampleRuns) -> None:
    done = furui("incidents", "list", "--db", str(examples.db), cwd=examples.folder)
    assert done.returncode == 0, done.stderr
    for doc in examples.documents[:20]:
        assert doc["host"]["ip"] in done.stdout, doc["host"]["ip"]


# -- triage survives more data ----------------------------------------------------------------


def _alternate_lines(source: Path, folder: Path) -> Iterator[Path]:
    """The eve file dealt into two halves, as two sensors' shares of one day would be."""
    lines = source.read_bytes().splitlines(keepends=True)
    for name, part in (("part-a", lines[0::2]), ("part-b", lines[1::2])):
        target = folder / name / "eve.json"
        target.parent.mkdir()
        target.write_bytes(b"".join(part))
        yield target


def _incidents(db: Path, cwd: Path) -> dict[str, Doc]:
    done = furui("incidents", "list", "--db", str(db), "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return {d["event"]["id"]: d for d in json.loads(done.stdout)}


def test_acknowledged_status_survives_a_run_over_more_data(tmp_path: Path) -> None:
    part_a, part_b = _alternate_lines(EXAMPLES / "wrccdc-2018" / "suricata" / "eve.json", tmp_path)
    db = tmp_path / "triage.duckdb"
    first = furui("analyze", str(part_a), "--db", str(db), "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = _incidents(db, tmp_path)
    assert before

    # the incident that part B will add most to: alerts on its host inside its window
    alerts_b = [json.loads(line) for line in part_b.read_bytes().splitlines()]

    def added(doc: Doc) -> int:
        host, window = doc["host"]["ip"], doc["furui"]["window"]
        return sum(
            host in (a["src_ip"], a["dest_ip"])
            and stamp(window["start"]) <= stamp(a["timestamp"]) < stamp(window["end"])
            for a in alerts_b
        )

    chosen = max(before.values(), key=added)
    assert added(chosen) > 0
    incident = chosen["event"]["id"]
    done = furui("incidents", "status", incident, "acknowledged", "--db", str(db), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{incident}: acknowledged" in done.stdout

    second = furui(
        "analyze", str(part_a), str(part_b), "--db", str(db), "--no-progress", cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr
    after = _incidents(db, tmp_path)
    assert after[incident]["furui"]["findings"] > chosen["furui"]["findings"]
    assert after[incident]["furui"]["status"] == "acknowledged"
    others = {i: d["furui"]["status"] for i, d in after.items() if i != incident}
    assert set(others.values()) == {"open"}
    assert set(before) <= set(after)


def test_status_of_an_unknown_incident_is_an_input_error(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    done = furui(
        "analyze",
        str(DATA / "suricata" / "eve-excerpt.json"),
        "--db",
        str(db),
        "--no-progress",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    missing = "0" * 32
    done = furui("incidents", "status", missing, "acknowledged", "--db", str(db), cwd=tmp_path)
    assert done.returncode == 3
    assert missing in done.stderr


# -- settings ---------------------------------------------------------------------------------


def test_settings_show_reflects_the_environment(tmp_path: Path) -> None:
    default = furui("settings", "show", "--json", cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    elsewhere = tmp_path / "var" / "lib" / "furui.duckdb"
    elsewhere.parent.mkdir(parents=True)
    env = {"FURUI_STORE__PATH": str(elsewhere)}
    shown = furui("settings", "show", "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    before, after = json.loads(default.stdout), json.loads(shown.stdout)
    assert after["store"]["path"] == str(elsewhere) != before["store"]["path"]
    assert {k: v for k, v in after.items() if k != "store"} == {
        k: v for k, v in before.items() if k != "store"
    }
    # and analyze uses it
    log = DATA / "zeek" / "dns-unanswered.log"
    done = furui("analyze", str(log), "--no-progress", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "furui.duckdb").exists()
    assert event_count(elsewhere) == sum(
        1 for line in log.read_bytes().splitlines() if not line.startswith(b"#")
    )
