"""Allowlists: loading with locations, matching, expiry, and suppression in incidents."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from correlator.correlate import CorrelationParams, correlate
from correlator.engine.allowlist import Allowlist, AllowlistEntry, expired, load_allowlist
from correlator.engine.batch import Batch
from correlator.engine.fixtures import engine_for, run
from correlator.errors import ConfigError
from correlator.normalise.addresses import Networks
from tests.unit.engine.helpers import events, rule

ENTRY = """[[entry]]
id = "{id}"
kind = "{kind}"
value = "{value}"
owner = "secops@example.org"
reason = "known good"
expires = {expires}
"""


def _entry(kind: str, value: str, expires: str = "2030-01-01", **extra: object) -> AllowlistEntry:
    return AllowlistEntry.model_validate(
        {
            "id": f"{kind}-1",
            "kind": kind,
            "value": value,
            "owner": "o",
            "reason": "r",
            "expires": expires,
            **extra,
        }
    )


def _labels(
    allowlist: Allowlist, rows: list[dict[str, object]], rule_id: str = "r1"
) -> list[object]:
    batch = Batch("zeek.http", events(rows), Networks.of(["10.0.0.0/8"]))
    labels = allowlist.label(batch, rule_id)
    return [None] * len(rows) if labels is None else labels.to_pylist()


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "allow.toml"
    path.write_text(ENTRY.format(id="a", kind="cidr", value="10.0.0.300/32", expires="2030-01-01"))
    with pytest.raises(ConfigError, match=rf"{path}:\d+: entry.0"):
        load_allowlist(path)
    path.write_text(ENTRY.format(id="a", kind="url", value="x", expires="2030-01-01"))
    with pytest.raises(ConfigError, match=rf"{path}:3: entry.0.kind"):
        load_allowlist(path)
    with pytest.raises(ConfigError, match="no such allowlist"):
        load_allowlist(tmp_path / "missing.toml")


def test_each_kind_matches_its_fields() -> None:
    domain = Allowlist((_entry("domain", "example.org"),))
    assert [
        x is not None
        for x in _labels(
            domain,
            [
                {"url.domain": "updates.EXAMPLE.org"},
                {"url.domain": "example.org."},
                {"url.domain": "badexample.org"},
                {"url.domain": None},
            ],
        )
    ] == [True, True, False, False]
    ja3 = Allowlist((_entry("ja3", "abc123"),))
    assert [
        x is not None for x in _labels(ja3, [{"tls.client.ja3": "ABC123"}, {"tls.client.ja3": "f"}])
    ] == [True, False]
    cidr = Allowlist((_entry("cidr", "203.0.113.0/24"),))
    assert [x is not None for x in _labels(cidr, [{}, {"destination.ip": "198.51.100.1"}])] == [
        True,
        False,
    ]
    signature = Allowlist((_entry("signature", "r1"),))
    assert [x is not None for x in _labels(signature, [{}], rule_id="r1")] == [True]
    assert [x is not None for x in _labels(signature, [{}], rule_id="r2")] == [False]


def test_entries_cover_evidence_up_to_their_expiry_day() -> None:
    allowlist = Allowlist((_entry("cidr", "203.0.113.0/24", expires="2024-05-01"),))
    assert [x is not None for x in _labels(allowlist, [{"t": 0}, {"t": 86400}])] == [True, False]
    assert expired(allowlist, date(2024, 5, 2)) == list(allowlist.entries)


def test_rule_restricted_entries() -> None:
    allowlist = Allowlist((_entry("cidr", "203.0.113.0/24", rules=("r2",)),))
    assert _labels(allowlist, [{}], rule_id="r1") == [None]
    assert str(_labels(allowlist, [{}], rule_id="r2")[0]).startswith("cidr-1: r (owner o")


def test_suppressed_evidence_is_shown_but_not_scored(tmp_path: Path) -> None:
    match = rule(
        tmp_path, "match", 'where = []\ngroup_by = ["destination.ip"]', risk=60, severity="high"
    )
    allowlist = Allowlist((_entry("cidr", "203.0.113.9/32"),))
    rows: list[dict[str, Any]] = [{"t": 0}, {"t": 10, "destination.ip": "198.51.100.7"}]
    findings = run(engine_for([match], allowlist=allowlist), {"zeek.connection": events(rows)})
    labels = findings.column("furui.allowlist").to_pylist()
    assert sum(label is None for label in labels) == 1
    assert sum(str(label).startswith("cidr-1:") for label in labels) == 1
    incident = correlate(findings, CorrelationParams()).to_pylist()[0]
    assert [e["peers"] for e in incident["furui.evidence"]] == [["198.51.100.7"]]
    suppressed = incident["furui.suppressed"]
    assert [(s["rule"]["id"], s["count"]) for s in suppressed] == [(match.id, 1)]
    assert suppressed[0]["allowlist"].startswith("cidr-1: r (owner o, until 2030-01-01)")
    assert incident["event.risk_score"] == 60.0
