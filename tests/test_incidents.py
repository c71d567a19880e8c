"""Real Suricata alerts and Zeek notices become incidents on the right host, with evidence.

The alerts are the WRCCDC 2017/2018, FIRST 2015 and honeypot captures of
``suricata-eve-ccdc-honeypot-alerts``: one real alert per signature. Expected hosts and
references are read from the alert records themselves, never typed in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from correlator.schema.incident import severity
from correlator.sinks.ndjson import documents
from tests.conftest import Runner, shared

ALERTS = "suricata-eve-ccdc-honeypot-alerts"


def _alert(capture: str, signature: str) -> dict[str, Any]:
    path = shared(ALERTS, capture, "alerts-only.ndjson")
    for line in path.read_text().splitlines():
        record: dict[str, Any] = json.loads(line)
        if signature in record["alert"]["signature"]:
            return record
    raise AssertionError(f"no alert {signature!r} in {path}")


def _incidents_of(run: Runner, *paths: Path) -> list[dict[str, Any]]:
    report = run(list(paths))
    return documents(report.incidents)


def _evidence(incident: dict[str, Any], sid: int) -> dict[str, Any] | None:
    return next((e for e in incident["furui"]["evidence"] if e["rule"]["id"] == str(sid)), None)


@pytest.mark.parametrize(
    ("capture", "signature", "host_field"),
    [
        # EternalBlue exploitation: the red team host attacks a blue team server on 445
        ("wrccdc-2018", "ETERNALBLUE MS17-010 Heap Spray", "dest_ip"),
        # the victim's response gives the exploited host away (victim is the source)
        ("wrccdc-2018", "ETERNALBLUE MS17-010 Echo Response", "src_ip"),
        # Shellshock against an internal web server from the Internet
        ("first-org-conf-2015", "CVE-2014-6271 Attempt in Headers", "dest_ip"),
        # CVE-2017-0199: an internal client downloads an HTA (the server's reply alerts) ...
        ("wrccdc-2017", "Potential CVE-2017-0199", "dest_ip"),
        # ... or requests one (the client's request alerts)
        ("wrccdc-2018", "Possible CVE-2017-0199", "src_ip"),
        # PowerShell over SMB: lateral movement, the source host is the one compromised
        ("wrccdc-2018", "Powershell Activity Over SMB", "src_ip"),
    ],
)
def test_alert_becomes_incident_on_the_right_host(
    run: Runner, capture: str, signature: str, host_field: str
) -> None:
    alert = _alert(capture, signature)
    incidents = _incidents_of(run, shared(ALERTS, capture, "alerts-only.ndjson"))
    host = alert[host_field]
    mine = [i for i in incidents if i["host"]["ip"] == host]
    assert mine, f"no incident for {host}"
    evidence = [e for i in mine if (e := _evidence(i, alert["alert"]["signature_id"]))]
    assert evidence, f"{signature} is not evidence on {host}"
    refs = evidence[0]["references"]
    assert str(alert["flow_id"]) in refs["suricata"]["eve"]["flow_id"]
    assert refs["network"]["community_id"][0].startswith("1:")
    assert evidence[0]["rule"]["name"] == alert["alert"]["signature"]
    assert evidence[0]["count"] >= 1


def test_external_attacker_gets_no_incident(run: Runner) -> None:
    alert = _alert("first-org-conf-2015", "CVE-2014-6271 Attempt in Headers")
    assert not alert["src_ip"].startswith(("10.", "192.168.", "172.16."))
    incidents = _incidents_of(run, shared(ALERTS, "first-org-conf-2015", "alerts-only.ndjson"))
    hosts = {i["host"]["ip"] for i in incidents}
    assert alert["dest_ip"] in hosts
    assert alert["src_ip"] not in hosts


def test_attack_from_internet_weighs_less_than_the_same_alert_from_inside(
    run: Runner, tmp_path: Path
) -> None:
    # derived from a real alert: only the source address (the field attribution reads) moves
    # from the Internet into the internal network
    alert = _alert("first-org-conf-2015", "CVE-2014-6271 Attempt in Headers")
    outside = tmp_path / "outside" / "eve.json"
    inside = tmp_path / "inside" / "eve.json"
    for path, source in ((outside, alert["src_ip"]), (inside, "10.9.9.9")):
        path.parent.mkdir()
        path.write_text(json.dumps({**alert, "src_ip": source}) + "\n")
    external = _incidents_of(run, outside)
    internal = _incidents_of(run, inside)
    victim = alert["dest_ip"]

    def risk(incidents: list[dict[str, Any]], window: str) -> float:
        return float(
            max(
                i["event"]["risk_score"]
                for i in incidents
                if i["host"]["ip"] == victim and i["furui"]["window"]["start"] == window
            )
        )

    window = external[0]["furui"]["window"]["start"]
    assert risk(internal, window) > risk(external, window) > 0


def test_incident_fields_and_bands(run: Runner) -> None:
    incidents = _incidents_of(run, shared(ALERTS))
    assert incidents
    ids = [i["event"]["id"] for i in incidents]
    assert len(ids) == len(set(ids))
    for incident in incidents:
        score = incident["event"]["risk_score"]
        assert 0 <= score <= 100
        assert incident["furui"]["severity"] == severity(score)
        assert incident["host"]["ip"] in incident["related"]["ip"]
        assert incident["@timestamp"] <= incident["event"]["end"]
        evidence = incident["furui"]["evidence"]
        assert evidence
        scores = [e["score"] for e in evidence]
        assert scores == sorted(scores, reverse=True)
        assert score >= scores[0] - 1e-6  # never below its strongest evidence
        for item in evidence:
            assert item["first_seen"] <= item["last_seen"]
            assert item["references"]["event"]["id"]


def test_zeek_notices_become_incidents(run: Runner) -> None:
    # Stratosphere 007: a Raspberry Pi honeypot brute-forced over SSH, then logged into
    incidents = _incidents_of(
        run, shared("stratosphere-ctu-zeek", "007-zeek-scenario-ssh-infected", "notice.log")
    )
    names = {e["rule"]["name"] for i in incidents for e in i["furui"]["evidence"]}
    assert "SSH::Interesting_Hostname_Login" in names
    for incident in incidents:
        for item in incident["furui"]["evidence"]:
            assert item["rule"]["ruleset"] == "zeek-notice"
            assert item["references"]["zeek"]["session_id"] or item["references"]["event"]["id"]


def test_ignored_notices_make_no_incident(run: Runner) -> None:
    # CTU-SME-11 logs only CaptureLoss::Too_Little_Traffic, a sensor health notice (score 0)
    incidents = _incidents_of(
        run, shared("stratosphere-ctu-sme-11-labelled", "zeek-labeled", "notice.log.labeled")
    )
    assert incidents == []
