"""``new`` and ``rare``: learning, first sightings, prevalence, retraction."""

from __future__ import annotations

from pathlib import Path

from correlator.engine.fixtures import canonical, engine_for
from tests.unit.engine.helpers import events, findings, rule

NEW = 'where = []\nfields = ["destination.ip"]\nby = ["source.ip"]\nlearning = "10m"'
RARE = 'where = []\nfields = ["ua"]\nmax_hosts = 1\nlearning = "10m"'


def test_new_peer_after_learning_only(tmp_path: Path) -> None:
    new = rule(tmp_path, "new", NEW)
    rows = [
        {"t": 0, "destination.ip": "10.9.0.1"},
        {"t": 300, "destination.ip": "10.9.0.2"},  # new, but while learning
        {"t": 900, "destination.ip": "10.9.0.1"},  # known
        {"t": 1200, "destination.ip": "10.9.0.3"},  # new
        {"t": 1300, "source.ip": "10.0.0.2", "destination.ip": "10.9.0.3"},  # new for this host
    ]
    found = findings([new], {"zeek.connection": events(rows)})
    assert [(f["host"], f["peer"]) for f in found] == [
        ("10.0.0.1", "10.9.0.3"),
        ("10.0.0.2", "10.9.0.3"),
    ]


def test_an_earlier_sighting_retracts_a_new_term(tmp_path: Path) -> None:
    new = rule(tmp_path, "new", NEW)
    engine = engine_for([new])
    engine.observe(
        "zeek.connection",
        events(
            [
                {"t": 0, "destination.ip": "10.9.0.1", "id": "x"},
                {"t": 1200, "destination.ip": "10.9.0.3", "id": "y"},
            ]
        ),
    )
    assert [f["peer"] for f in canonical(engine.finish())] == ["10.9.0.3"]
    # an older file turns up: 10.9.0.3 was known all along
    engine.observe("zeek.connection", events([{"t": 60, "destination.ip": "10.9.0.3", "id": "z"}]))
    again = engine.finish()
    assert again.column("event.risk_score").to_pylist() == [0.0]


def test_rare_until_a_second_host_uses_it(tmp_path: Path) -> None:
    rare = rule(tmp_path, "rare", RARE)
    engine = engine_for([rare])
    common = [{"t": 0, "ua": "Firefox"}, {"t": 5, "source.ip": "10.0.0.2", "ua": "Firefox"}]
    rows = events([*common, {"t": 30, "ua": "evil/1.0"}, {"t": 700, "ua": "Firefox"}])
    engine.observe("zeek.connection", rows)
    found = canonical(engine.finish())
    assert [(f["host"], f["message"]) for f in found] == [
        ("10.0.0.1", "Test rule: evil/1.0 used by 1 host(s), 10.0.0.1 among them")
    ]
    engine.observe(
        "zeek.connection",
        events([{"t": 800, "source.ip": "10.0.0.3", "ua": "evil/1.0", "id": "z"}]),
    )
    assert engine.finish().column("event.risk_score").to_pylist() == [0.0]


def test_rare_waits_for_enough_history(tmp_path: Path) -> None:
    rare = rule(tmp_path, "rare", RARE)
    rows = events([{"t": 0, "ua": "Firefox"}, {"t": 30, "ua": "evil/1.0"}])
    assert findings([rare], {"zeek.connection": rows}) == []
