"""Small event tables and one-rule engines for the engine's unit tests.

The events here are synthetic on purpose: each test states the few fields its logic
reads. Rule fixtures (tests/detections) are the real-data counterpart.
"""

from __future__ import annotations

import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from correlator.engine.fixtures import canonical, engine_for, run
from correlator.engine.kinds.base import Limits
from correlator.engine.loader import load_rule
from correlator.engine.rule import Rule
from correlator.schema.event import TIMESTAMP

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def events(rows: list[dict[str, Any]], dataset: str = "zeek.connection") -> pa.Table:
    """A normalised-looking table: ``@timestamp`` from ``t`` (seconds after T0), ids."""
    out = []
    for i, given in enumerate(rows):
        row = dict(given)
        at = T0 + timedelta(seconds=float(row.pop("t", i)))
        out.append(
            {
                "event.id": row.pop("id", f"e{i:05d}"),
                "@timestamp": at,
                "event.dataset": dataset,
                "source.ip": "10.0.0.1",
                "destination.ip": "203.0.113.9",
                "destination.port": 443,
                "network.direction": None,
                **row,
            }
        )
    table = pa.Table.from_pylist(out)
    index = table.schema.get_field_index("@timestamp")
    return table.set_column(index, "@timestamp", table.column("@timestamp").cast(TIMESTAMP))


def rule(
    tmp_path: Path,
    kind: str,
    params: str,
    *,
    extra: str = "",
    stream: str = "zeek.connection",
    name: str = "Test rule",
    risk: int = 40,
    severity: str = "medium",
) -> Rule:
    """Write and load a one-off rule file of ``kind`` with ``params`` (TOML body)."""
    folder = tmp_path / "command_and_control"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"command_and_control_{uuid.uuid4().hex[:8]}.toml"
    path.write_text(
        f"""[metadata]
rule_id = "{uuid.uuid4()}"
version = 1
maturity = "experimental"
created = 2026-11-27
updated = 2026-11-27

[rule]
name = "{name}"
description = "A rule written by a unit test."
severity = "{severity}"
risk_score = {risk}
data_sources = ["{stream}"]
kind = "{kind}"
{extra}
[rule.params]
{params}

[[rule.attack]]
tactic = "TA0011"
technique = "T1071"
""",
        encoding="utf-8",
    )
    tomllib.loads(path.read_text())  # a broken test rule fails here, clearly
    return load_rule(path)


def findings(
    rules: list[Rule],
    streams: dict[str, pa.Table],
    *,
    limits: Limits | None = None,
    batch_rows: int | None = None,
) -> list[dict[str, Any]]:
    """Canonical findings of some rules over some streams."""
    engine = engine_for(rules, limits=limits)
    return canonical(run(engine, streams, batch_rows=batch_rows))
