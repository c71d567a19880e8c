"""``furui eval``: the definitions and the metric code (docs/detection.md).

Hand-built cases check every count from first principles; the real captures check that
the labels are read as the definitions say (which hosts are infected, which are victims),
not how well Furui currently detects them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from correlator.errors import InputError
from correlator.evaluation.labels import (
    HostClass,
    LabelColumns,
    Truth,
    host_class,
    labelled_events,
    truth_of,
    with_host_labels,
)
from correlator.evaluation.metrics import (
    FlowRates,
    HostRates,
    IncidentView,
    RuleHit,
    incident_views,
    score_capture,
    summarise,
)
from correlator.evaluation.run import (
    Capture,
    FlowList,
    HostList,
    ModelMode,
    capture_truth,
    evaluate_captures,
    find_captures,
    parse_labels,
    read_label_file,
)
from correlator.settings import Settings
from correlator.testing import default_context
from tests.conftest import shared

CONN = [
    # id, uid, source, destination, direction, label, detailed label
    ("e1", "C1", "10.0.0.1", "6.6.6.6", "outbound", "Malicious", "C&C-Torii"),
    ("e2", "C2", "10.0.0.1", "6.6.6.6", "outbound", "Malicious", "C&C-Torii"),
    ("e3", "C3", "1.2.3.4", "10.0.0.2", "inbound", "Malicious", "External-Attack-to-Device"),
    ("e4", "C4", "10.0.0.2", "8.8.8.8", "outbound", "Benign", "Google"),
    ("e5", "C5", "10.0.0.3", "8.8.8.8", "outbound", "Benign", ""),
    ("e6", "C6", "10.0.0.4", "8.8.8.8", "outbound", "Background", ""),
    ("e7", "C7", "10.0.0.1", "10.0.0.5", "internal", "Malicious", "C&C-Torii"),
    ("e8", "C8", "5.5.5.5", "9.9.9.9", "external", "Benign", ""),
]
# http and ssl records carry no local flags: their direction says "external"
HTTP = [
    ("h1", "C5", "10.0.0.3", "8.8.8.8", "external", "Benign", ""),
    ("h2", "C9", "10.0.0.3", "93.184.216.34", "external", "Benign", ""),
]
SSL = [("s1", "C3", "1.2.3.4", "10.0.0.2", "external", "Benign", "")]


def _stream(dataset: str, rows: Sequence[tuple[str, ...]]) -> pa.Table:
    names = ["event.id", "zeek.session_id", "source.ip", "destination.ip", "network.direction"]
    names += [f"{dataset}.label", f"{dataset}.detailedlabel"]
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})


@pytest.fixture
def truth() -> Truth:
    streams = {
        "zeek.connection": _stream("zeek.connection", CONN),
        "zeek.http": _stream("zeek.http", HTTP),
        "zeek.ssl": _stream("zeek.ssl", SSL),
        "zeek.weird": pa.table({"event.id": ["w1"]}),  # no label field: left out
    }
    return truth_of(labelled_events(streams, LabelColumns()), "lab")


def test_host_classes_follow_the_definitions(truth: Truth) -> None:
    hosts = truth.hosts
    assert sorted(hosts) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
    infected = hosts["10.0.0.1"]
    assert (infected.klass, infected.family, infected.malicious_out) == ("infected", "Torii", 3)
    victim = hosts["10.0.0.2"]  # attacked from outside, benign traffic of its own
    assert (victim.klass, victim.family) == ("attacked", "inbound attacks")
    assert (victim.malicious_out, victim.malicious_in, victim.benign) == (0, 1, 2)
    assert (hosts["10.0.0.3"].klass, hosts["10.0.0.3"].benign) == ("benign", 3)
    assert hosts["10.0.0.4"].klass == "unknown"  # Background only
    lateral = hosts["10.0.0.5"]  # target of the infected host
    assert (lateral.klass, lateral.family, lateral.malicious_in) == ("attacked", "Torii", 1)


def test_flows_join_records_by_uid_and_the_strongest_label_wins(truth: Truth) -> None:
    flows = truth.flows
    assert flows.label == {
        "C1": 1, "C2": 1, "C3": 1, "C4": 0, "C5": 0, "C6": -1, "C7": 1, "C8": 0, "C9": 0,
    }  # fmt: skip
    assert flows.by_event["h1"] == "C5"
    assert flows.by_event["s1"] == "C3"  # the benign ssl record of the attack flow
    assert flows.family == {"C1": "Torii", "C2": "Torii", "C3": "inbound attacks", "C7": "Torii"}


def _incidents() -> list[IncidentView]:
    beacon = RuleHit("r-beacon", "Beacon", "furui", 60.0)
    return [
        IncidentView(
            "10.0.0.1",
            "critical",
            80.0,
            frozenset({"e1"}),
            frozenset({"C2", "C5"}),
            (beacon, RuleHit("ml", "Flow model", "ml", 20.0)),
        ),
        IncidentView(
            "10.0.0.3",
            "high",
            50.0,
            frozenset({"h2"}),
            frozenset(),
            (RuleHit("r-long", "Long connection", "furui", 50.0),),
        ),
        IncidentView(
            "10.0.0.2",
            "medium",
            30.0,
            frozenset(),
            frozenset({"C3", "Cx"}),  # Cx: a uid no labelled event has
            (RuleHit("r-long", "Long connection", "furui", 30.0),),
        ),
        IncidentView("10.0.0.9", "low", 10.0, frozenset({"e6"}), frozenset(), ()),
        IncidentView(  # the infected host's next window
            "10.0.0.1",
            "low",
            5.0,
            frozenset({"e7"}),
            frozenset(),
            (RuleHit("r-beacon", "Beacon", "furui", 5.0),),
        ),
    ]


def test_host_level_counts(truth: Truth) -> None:
    result = score_capture("lab", truth, _incidents())
    by_ip = {h.truth.ip: h for h in result.hosts}
    assert (by_ip["10.0.0.1"].severity, by_ip["10.0.0.1"].risk) == ("critical", 80.0)
    assert by_ip["10.0.0.1"].incidents == 2
    assert [r.rule_id for r in by_ip["10.0.0.1"].rules] == ["r-beacon", "ml"]
    assert by_ip["10.0.0.1"].rules[0].contribution == 60.0  # strongest over its incidents
    assert by_ip["10.0.0.5"].severity == "none"
    assert by_ip["10.0.0.9"].truth.klass == "unknown"  # an incident, but no labelled event
    # TP 10.0.0.1; FP 10.0.0.3 (benign, high); TN 10.0.0.2 (medium) and 10.0.0.5 (none)
    assert result.host_rates == HostRates(
        tp=1, fn=0, fp=1, tn=2, precision=0.5, recall=1.0, fpr=1 / 3
    )


def test_event_level_counts(truth: Truth) -> None:
    flows = score_capture("lab", truth, _incidents()).flows
    # any incident references C1, C2, C5 | C9 | C3 | C6 | C7: 4 of 4 malicious, 2 benign
    assert flows.any_incident == FlowRates(
        malicious=4,
        benign=4,
        unknown=1,
        referenced_malicious=4,
        referenced_benign=2,
        referenced_unknown=1,
        recall=1.0,
        precision=4 / 6,
    )
    # high and critical incidents reference C1, C2, C5, C9
    assert (flows.alerting.referenced_malicious, flows.alerting.referenced_benign) == (2, 2)
    assert (flows.alerting.recall, flows.alerting.precision) == (0.5, 0.5)
    assert flows.by_family == {"Torii": (3, 3, 2), "inbound attacks": (1, 1, 0)}


def test_summary_pools_captures_and_names_the_drivers(truth: Truth) -> None:
    one = score_capture("lab", truth, _incidents())
    summary = summarise([one, score_capture("lab2", truth, _incidents())])
    assert summary.hosts == HostRates(tp=2, fn=0, fp=2, tn=4, precision=0.5, recall=1.0, fpr=1 / 3)
    assert summary.flows_any.malicious == 8
    assert summary.flows_any.precision == one.flows.any_incident.precision
    assert summary.confusion["infected"] == {
        "none": 0, "low": 0, "medium": 0, "high": 0, "critical": 2,
    }  # fmt: skip
    assert summary.confusion["attacked"]["medium"] == 2
    assert summary.confusion["attacked"]["none"] == 2
    assert summary.confusion["benign"]["high"] == 2
    assert summary.confusion["unknown"] == {
        "none": 2, "low": 2, "medium": 0, "high": 0, "critical": 0,
    }  # fmt: skip
    [driver] = summary.false_positive_drivers
    assert (driver.rule_id, driver.hosts, driver.alerted, driver.max_contribution) == (
        "r-long",
        4,
        2,
        50.0,
    )
    assert [d.rule_id for d in summary.true_positive_drivers] == ["r-beacon", "ml"]
    families = {(f.family, f.role): f for f in summary.families}
    torii = families["Torii", "infected"]
    assert (torii.hosts, torii.alerted, torii.flows, torii.referenced) == (2, 2, 6, 6)
    assert torii.referenced_alerting == 4
    assert (families["inbound attacks", "attacked"].hosts, families["Torii", "attacked"].hosts) == (
        2,
        2,
    )
    assert [(h.capture, h.truth.ip) for h in summary.failures()] == [
        ("lab", "10.0.0.3"),
        ("lab2", "10.0.0.3"),
    ]


def test_rates_are_undefined_without_their_denominator() -> None:
    assert HostRates.of([]) == HostRates(0, 0, 0, 0, None, None, None)
    empty = FlowRates.of({})
    assert (empty.recall, empty.precision) == (None, None)
    assert FlowRates() + empty == empty


def test_incident_views_read_references_and_rules() -> None:
    evidence = [
        {
            "rule": {"id": "r1", "name": "Rule one", "ruleset": "furui"},
            "contribution": 12.5,
            "references": {"event": {"id": ["a:1", "a:2"]}, "zeek": {"session_id": ["Cu"]}},
        },
        {"rule": {"id": "r2", "name": None, "ruleset": "ml"}, "contribution": None},
    ]
    table = pa.table(
        {
            "host.ip": ["10.0.0.1"],
            "furui.severity": ["high"],
            "event.risk_score": [55.0],
            "furui.evidence": [evidence],
        }
    )
    [view] = incident_views(table)
    assert (view.event_ids, view.uids) == (frozenset({"a:1", "a:2"}), frozenset({"Cu"}))
    assert view.rules == (RuleHit("r1", "Rule one", "furui", 12.5), RuleHit("r2", "r2", "ml", 0.0))
    assert incident_views(pa.table({})) == []


# -- label files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "klass"),
    [
        ("infected", "infected"),
        ("Malicious", "infected"),
        ("victim", "attacked"),
        ("attacked", "attacked"),
        ("Benign", "benign"),
        ("normal", "benign"),
        ("Background", "unknown"),
        ("", "unknown"),
    ],
)
def test_host_list_words(text: str, klass: str) -> None:
    assert host_class(text) == klass


def test_a_host_list_replaces_host_classes(tmp_path: Path, truth: Truth) -> None:
    path = tmp_path / "hosts.csv"
    path.write_text(
        "# incident report 2024-05\nIP,Label,Family,Capture\n"
        "10.0.0.3,compromised,Emotet,\n10.0.0.7,benign,,lab\n10.0.0.2,victim,,other\n"
    )
    hosts = read_label_file(path)
    assert isinstance(hosts, HostList)
    listed = {ip: (k, f) for where, ip, k, f in hosts.rows if where in "lab"}
    updated = with_host_labels(truth, listed).hosts
    assert (updated["10.0.0.3"].klass, updated["10.0.0.3"].family) == ("infected", "Emotet")
    assert updated["10.0.0.3"].benign == 3  # the flows' counts are kept
    assert (updated["10.0.0.7"].klass, updated["10.0.0.7"].family) == ("benign", "benign")
    assert updated["10.0.0.1"].klass == "unknown"  # not listed
    assert updated["10.0.0.2"].klass == "unknown"  # listed for another capture


def test_label_files_and_fields(tmp_path: Path) -> None:
    flows = tmp_path / "flows.csv"
    flows.write_text("uid,label,detailedlabel\nCabc,Malicious,C&C\n")
    parsed = parse_labels(str(flows), attack_pattern="Inbound")
    assert isinstance(parsed, FlowList)
    assert (parsed.rows, parsed.attack_pattern) == ((("", "Cabc", "Malicious", "C&C"),), "Inbound")
    assert parse_labels("zeek.connection.label") == LabelColumns(label="zeek.connection.label")
    with pytest.raises(InputError, match="no such label file"):
        parse_labels(str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("host,verdict\n10.0.0.1,infected\n")
    with pytest.raises(InputError, match=r"bad.csv:1: .*ip,label"):
        read_label_file(bad)
    bad.write_text("ip,label\n10.0.0.1,infected\n10.0.0.2,\n")
    with pytest.raises(InputError, match=r"bad.csv:3: "):
        read_label_file(bad)


# -- the shared labelled captures: definitions, not detection quality --------------------------


def _truth(*parts: str) -> Truth:
    [capture] = find_captures([shared(*parts)], LabelColumns()).captures
    return capture_truth(capture, LabelColumns(), default_context())


def _infected(truth: Truth) -> dict[str, str]:
    return {ip: h.family for ip, h in truth.hosts.items() if h.klass is HostClass.INFECTED}


def test_ctu_sme_11_remcos_host_is_infected() -> None:
    truth = _truth("stratosphere-ctu-sme-11-labelled")
    assert _infected(truth) == {"192.168.1.107": "RemcosRAT"}
    assert truth.hosts["192.168.1.107"].malicious_out == 719
    assert truth.hosts["192.168.1.135"].klass == "benign"  # the Chromecast talking to it


def test_ctu_001_njrat_host_is_infected_and_read_once() -> None:
    found = find_captures(
        [shared("stratosphere-ctu-zeek", "001-zeek-scenario-malicious")], LabelColumns()
    )
    [capture] = found.captures
    assert [p.name for p in capture.logs] == ["labeled-conn.log"]
    assert any(p.endswith("/conn.log") and "same traffic" in r for p, r in found.passed_over)
    truth = capture_truth(capture, LabelColumns(), default_context())
    assert _infected(truth) == {"192.168.1.115": "NjRAT"}
    assert truth.hosts["192.168.1.115"].malicious_out == 244


@pytest.mark.parametrize(
    ("scenario", "victim"),
    [
        ("008-zeek-mixed", "147.32.81.167"),
        ("010-zeek-mixed", "147.32.83.234"),
        ("011-zeek-mixed", "147.32.83.165"),
    ],
)
def test_ctu_normal_hosts_attacked_from_outside_are_victims(scenario: str, victim: str) -> None:
    truth = _truth("stratosphere-ctu-zeek", scenario)
    assert _infected(truth) == {}
    host = truth.hosts[victim]
    assert (host.klass, host.family, host.malicious_out) == ("attacked", "inbound attacks", 0)
    assert host.malicious_in > 3000
    assert all(h.klass in ("attacked", "benign") for h in truth.hosts.values())


def test_captures_of_the_shared_datasets() -> None:
    iot = find_captures([shared("iot23-labelled-subset")], LabelColumns())
    assert len(iot.captures) == 5  # one scenario per CSV
    assert all(len(c.logs) == 1 and c.name.endswith(".csv") for c in iot.captures)
    sme = find_captures([shared("stratosphere-ctu-sme-11-labelled")], LabelColumns())
    assert [c.name for c in sme.captures] == ["stratosphere-ctu-sme-11-labelled/zeek-labeled"]
    assert len(sme.captures[0].logs) >= 5  # conn, dns, ssl … analysed together
    scan = find_captures(
        [shared("stratosphere-ctu-zeek", "002-zeek-scenario-port-scanning")], LabelColumns()
    )
    assert scan.captures == ()
    assert any("no label field" in reason for _, reason in scan.passed_over)


def test_a_flow_list_labels_the_logs(tmp_path: Path) -> None:
    conn = shared("stratosphere-ctu-sme-11-labelled", "zeek-labeled", "conn.log.labeled")
    [uid] = [line.split("\t")[1] for line in conn.read_text().splitlines()[8:9]]
    flows = tmp_path / "flows.csv"
    flows.write_text(f"uid,label,capture\n{uid},Malicious,zeek-labeled\n{uid},Benign,elsewhere\n")
    source = read_label_file(flows)
    truth = capture_truth(Capture("x/zeek-labeled", (conn,)), source, default_context())
    assert {k: v for k, v in truth.flows.label.items() if v >= 0} == {uid: 1}
    assert len(truth.flows.label) == 766  # the others are unknown
    assert [h.klass for h in truth.hosts.values()].count(HostClass.INFECTED) == 1


def test_a_held_out_model_needs_other_captures(settings: Settings) -> None:
    [capture] = find_captures([shared("stratosphere-ctu-sme-11-labelled")], LabelColumns()).captures
    with pytest.raises(InputError, match="3 other captures"):
        evaluate_captures([capture], settings, LabelColumns(), mode=ModelMode.HELD_OUT)


def test_eval_command_reports_hosts_as_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "correlator", "eval",
         str(shared("stratosphere-ctu-sme-11-labelled")),
         "--ml", "off", "--json", "--plot", str(tmp_path / "eval.png")],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [evaluation] = json.loads(done.stdout)["evaluations"]
    assert (evaluation["mode"], evaluation["model"]) == ("off", "disabled")
    [capture] = evaluation["summary"]["captures"]
    hosts = {h["truth"]["ip"]: h for h in capture["hosts"]}
    assert hosts["192.168.1.107"]["truth"]["klass"] == "infected"
    assert hosts["192.168.1.107"]["severity"] in ("none", "low", "medium", "high", "critical")
    assert evaluation["rules"] > 0
    assert (tmp_path / "eval.png").read_bytes().startswith(b"\x89PNG")
    assert not list(tmp_path.glob("*.duckdb"))  # the stores were temporary


def test_eval_without_labels_is_an_input_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "correlator", "eval",
         str(shared("stratosphere-ctu-zeek", "002-zeek-scenario-port-scanning"))],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3
    assert "no labelled capture" in done.stderr


def test_eval_help_names_its_options(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "correlator", "eval", "--help"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for option in ("--labels", "--attack-label", "--ml", "--plot", "--json", "--config"):
        assert option in done.stdout, option
