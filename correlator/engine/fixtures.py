"""Rule fixtures: normalised events as NDJSON, run through the engine, compared to golden.

Each rule has ``tests/detections/<rule file stem>/`` with ``positive.ndjson`` (events that
must produce ``expected.json``), ``negative.ndjson`` (near misses that must produce
nothing) and a ``README.md`` naming the dataset, file and rows they were carved from. An
event line is one normalised event with its flat ECS names, exactly as the normaliser
produced it from the real log (``carve`` writes them).

Used by ``furui rules test``, ``tests/test_detections.py`` and the lints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.allowlist import Allowlist
from correlator.engine.detector import RuleEngine
from correlator.engine.kinds.base import Context, Limits
from correlator.engine.rule import Rule
from correlator.normalise.addresses import Networks
from correlator.schema.ecs import ECS_TYPES
from correlator.schema.event import CORE_SCHEMA

POSITIVE: Final = "positive.ndjson"
NEGATIVE: Final = "negative.ndjson"
EXPECTED: Final = "expected.json"
README: Final = "README.md"
#: The default internal networks, which fixtures are written for.
INTERNAL: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
_TYPES: Final = {**{f.name: f.type for f in CORE_SCHEMA}, **ECS_TYPES}


@dataclass(frozen=True, slots=True)
class FixtureResult:
    """What a rule produced on its fixtures, and whether that is what was expected."""

    rule: Rule
    folder: Path
    positive: list[dict[str, Any]]
    negative: list[dict[str, Any]]
    expected: list[dict[str, Any]] | None

    @property
    def problems(self) -> list[str]:
        """Why the rule fails its fixtures (empty if it passes)."""
        out = []
        if self.expected is None:
            out.append(
                f"{self.folder / EXPECTED}: missing (run `furui rules test --update-golden`)"
            )
        elif self.positive != self.expected:
            out.append(
                f"{self.folder / POSITIVE}: findings differ from {EXPECTED}:\n"
                f"  got      {json.dumps(self.positive, sort_keys=True)}\n"
                f"  expected {json.dumps(self.expected, sort_keys=True)}"
            )
        if not self.positive:
            out.append(f"{self.folder / POSITIVE}: no finding")
        if self.negative:
            out.append(
                f"{self.folder / NEGATIVE}: {len(self.negative)} finding(s): {self.negative}"
            )
        return out


def stream_of(event: dict[str, Any]) -> str:
    """The stream of a normalised event (Suricata streams are per eve event type)."""
    dataset = str(event["event.dataset"])
    if dataset == "suricata.eve":
        return f"suricata.eve.{event['suricata.eve.event_type']}"
    return dataset


def read_events(path: Path) -> dict[str, pa.Table]:
    """A fixture file back into per-stream tables with the normaliser's types."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON: {error}") from error
        rows.setdefault(stream_of(event), []).append(event)
    # a fixture is a set of events: replay each stream in time order, as a sensor writes it
    return {
        stream: (table := _typed(events)).take(
            pc.sort_indices(
                table, sort_keys=[("@timestamp", "ascending"), ("event.id", "ascending")]
            )
        )
        for stream, events in rows.items()
    }


def _typed(events: list[dict[str, Any]]) -> pa.Table:
    names = list(dict.fromkeys(k for e in events for k in e))
    columns = {}
    for name in names:
        values = [e.get(name) for e in events]
        wanted = _TYPES.get(name)
        if wanted is not None and pa.types.is_timestamp(wanted):
            array = pc.cast(pa.array(values, pa.string()), pa.timestamp("us", tz="UTC"))
        else:
            array = pa.array(values)
            if wanted is not None:
                array = pc.cast(array, wanted)
        columns[name] = array
    return pa.table(columns)


def carve(
    table: pa.Table, rows: Sequence[int] | None = None, *, root: Path | None = None
) -> list[str]:
    """Event lines for a fixture from a normalised table (optionally some rows only).

    ``root`` shortens ``log.file.path`` to a path relative to it (the shared datasets).
    """
    picked = table.take(pa.array(rows)) if rows is not None else table
    lines = []
    for event in picked.to_pylist():
        clean = {k: v for k, v in event.items() if v is not None and v != []}
        path = clean.get("log.file.path")
        if root is not None and isinstance(path, str) and path.startswith(str(root)):
            clean["log.file.path"] = str(Path(path).relative_to(root))
        lines.append(orjson.dumps(clean, option=orjson.OPT_UTC_Z, default=str).decode())
    return lines


def engine_for(
    rules: Iterable[Rule], *, allowlist: Allowlist | None = None, limits: Limits | None = None
) -> RuleEngine:
    """An engine over some rules with the default internal networks."""
    context = Context(Networks.of(list(INTERNAL)), allowlist or Allowlist(), limits or Limits())
    return RuleEngine(list(rules), context, inbound_factor=0.5)


def run(
    engine: RuleEngine,
    streams: dict[str, pa.Table],
    *,
    batch_rows: int | None = None,
    order: Sequence[str] | None = None,
) -> pa.Table:
    """Feed per-stream tables to an engine and finish it.

    By default events go in time order across streams, as a live sensor delivers them, in
    runs of one stream; ``order`` feeds whole streams one after another instead, as files
    are read. ``batch_rows`` cuts every run into batches of that many rows.
    """
    slices = (
        _timeline(streams)
        if order is None
        else [(stream, 0, streams[stream].num_rows) for stream in order]
    )
    found: list[pa.Table] = []
    for stream, start, stop in slices:
        table = streams[stream]
        step = batch_rows or max(stop - start, 1)
        found.extend(
            engine.observe(stream, table.slice(offset, min(step, stop - offset)))
            for offset in range(start, stop, step)
        )
    found.append(engine.finish())
    return pa.concat_tables(found)


def _timeline(streams: dict[str, pa.Table]) -> list[tuple[str, int, int]]:
    """Runs ``(stream, start, stop)`` that replay time-sorted streams in global time order."""
    names = sorted(streams)
    keyed = [
        (ts, i, row)
        for i, name in enumerate(names)
        for row, ts in enumerate(
            pc.cast(streams[name].column("@timestamp"), pa.int64()).to_pylist()
        )
    ]
    keyed.sort(key=lambda k: (k[0] if k[0] is not None else 0, k[1], k[2]))
    runs: list[tuple[str, int, int]] = []
    for _, i, row in keyed:
        if runs and runs[-1][0] == names[i] and runs[-1][2] == row:
            runs[-1] = (names[i], runs[-1][1], row + 1)
        else:
            runs.append((names[i], row, row + 1))
    return runs


def canonical(findings: pa.Table) -> list[dict[str, Any]]:
    """Findings as golden records: stable fields only, sorted; retractions left out."""
    records = []
    for row in findings.to_pylist():
        if row["event.risk_score"] <= 0:
            continue
        stamp: datetime = row["@timestamp"]
        records.append(
            {
                "rule_id": row["rule.id"],
                "host": row["host.ip"],
                "role": row["furui.role"],
                "peer": row["furui.peer_ip"],
                "events": row["furui.events"],
                "timestamp": stamp.astimezone(UTC).isoformat(),
                "risk_score": round(float(row["event.risk_score"]), 2),
                "message": row["message"],
                "allowlist": row["furui.allowlist"],
            }
        )
    return sorted(records, key=lambda r: (r["host"], r["timestamp"], r["message"]))


def fixture_folder(tests_root: Path, rule: Rule) -> Path:
    """Where a rule's fixtures live."""
    return tests_root / rule.path.stem


def run_fixtures(rule: Rule, folder: Path) -> FixtureResult:
    """Run one rule over its positive and negative fixtures."""
    positive = canonical(run(engine_for([rule]), read_events(folder / POSITIVE)))
    negative = canonical(run(engine_for([rule]), read_events(folder / NEGATIVE)))
    expected_path = folder / EXPECTED
    expected = json.loads(expected_path.read_text()) if expected_path.is_file() else None
    return FixtureResult(rule, folder, positive, negative, expected)


def write_expected(result: FixtureResult) -> None:
    """Write the positive findings as the new golden file (``make golden``)."""
    text = json.dumps(result.positive, indent=2, sort_keys=True) + "\n"
    (result.folder / EXPECTED).write_text(text, encoding="utf-8")
