"""Incidents scored against labels: per capture, then pooled (pure, no I/O).

The definitions are the package's (``correlator.evaluation``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

from correlator.evaluation.labels import (
    BENIGN,
    MALICIOUS,
    NEGATIVE,
    UNKNOWN_FAMILY,
    Flows,
    HostClass,
    HostTruth,
    Truth,
)

#: Severities from weakest to strongest; ``none`` is a host without any incident.
SEVERITIES: Final = ("none", "low", "medium", "high", "critical")
#: Severities that count as an alert (the issue's bar: infected hosts get one, others not).
ALERTING: Final = frozenset({"high", "critical"})


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule's evidence on a host: the strongest contribution over its incidents."""

    rule_id: str
    name: str
    ruleset: str
    contribution: float


@dataclass(frozen=True, slots=True)
class IncidentView:
    """What the evaluation reads from one incident."""

    host: str
    severity: str
    risk: float
    event_ids: frozenset[str]
    uids: frozenset[str]
    rules: tuple[RuleHit, ...]


@dataclass(frozen=True, slots=True)
class HostOutcome:
    """A labelled host and the strongest incident it got.

    Attributes:
        capture: the capture the host belongs to.
        truth: what the labels say.
        severity: severity of its strongest incident, ``none`` without one.
        risk: risk score of that incident (0 without one).
        incidents: how many incidents (windows) it got.
        rules: every rule in its incidents' evidence, strongest first.
    """

    capture: str
    truth: HostTruth
    severity: str
    risk: float
    incidents: int
    rules: tuple[RuleHit, ...]

    @property
    def alerted(self) -> bool:
        """The host got a high or critical incident."""
        return self.severity in ALERTING


@dataclass(frozen=True, slots=True)
class HostRates:
    """Host-level confusion: infected hosts are positives, attacked and benign negatives.

    Attributes:
        tp: infected hosts alerted.
        fn: infected hosts not alerted.
        fp: negative hosts alerted.
        tn: negative hosts not alerted.
        precision: ``tp / (tp + fp)``; ``None`` when no host was alerted.
        recall: ``tp / (tp + fn)``; ``None`` without infected hosts.
        fpr: ``fp / (fp + tn)``; ``None`` without negative hosts.
    """

    tp: int
    fn: int
    fp: int
    tn: int
    precision: float | None
    recall: float | None
    fpr: float | None

    @classmethod
    def of(cls, hosts: Iterable[HostOutcome]) -> HostRates:
        """Count the outcomes (unknown hosts are left out)."""
        tp = fn = fp = tn = 0
        for host in hosts:
            if host.truth.klass is HostClass.INFECTED:
                tp, fn = (tp + 1, fn) if host.alerted else (tp, fn + 1)
            elif host.truth.klass in NEGATIVE:
                fp, tn = (fp + 1, tn) if host.alerted else (fp, tn + 1)
        return cls(tp, fn, fp, tn, ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(fp, fp + tn))


@dataclass(frozen=True, slots=True)
class FlowRates:
    """Event-level counts: labelled flows, and those incidents reference.

    Attributes:
        malicious: malicious flows.
        benign: benign flows.
        unknown: unknown flows.
        referenced_malicious: malicious flows referenced.
        referenced_benign: benign flows referenced.
        referenced_unknown: unknown flows referenced (not in precision).
        recall: ``referenced_malicious / malicious``.
        precision: ``referenced_malicious / (referenced_malicious + referenced_benign)``.
    """

    malicious: int = 0
    benign: int = 0
    unknown: int = 0
    referenced_malicious: int = 0
    referenced_benign: int = 0
    referenced_unknown: int = 0
    recall: float | None = None
    precision: float | None = None

    @classmethod
    def of(cls, counts: Mapping[tuple[int, bool], int]) -> FlowRates:
        """From counts per (label, referenced)."""
        mal = counts.get((MALICIOUS, True), 0)
        ben = counts.get((BENIGN, True), 0)
        return cls(
            malicious=mal + counts.get((MALICIOUS, False), 0),
            benign=ben + counts.get((BENIGN, False), 0),
            unknown=counts.get((-1, True), 0) + counts.get((-1, False), 0),
            referenced_malicious=mal,
            referenced_benign=ben,
            referenced_unknown=counts.get((-1, True), 0),
            recall=ratio(mal, mal + counts.get((MALICIOUS, False), 0)),
            precision=ratio(mal, mal + ben),
        )

    def __add__(self, other: FlowRates) -> FlowRates:
        """Pool two sets of counts."""
        counts = {
            (MALICIOUS, True): self.referenced_malicious + other.referenced_malicious,
            (MALICIOUS, False): self.malicious - self.referenced_malicious
            + other.malicious - other.referenced_malicious,
            (BENIGN, True): self.referenced_benign + other.referenced_benign,
            (BENIGN, False): self.benign - self.referenced_benign
            + other.benign - other.referenced_benign,
            (-1, True): self.referenced_unknown + other.referenced_unknown,
            (-1, False): self.unknown - self.referenced_unknown
            + other.unknown - other.referenced_unknown,
        }  # fmt: skip
        return FlowRates.of(counts)


@dataclass(frozen=True, slots=True)
class FlowOutcome:
    """Event-level results of a capture: by any incident, and by alerting ones only.

    Attributes:
        any_incident: flows referenced by any incident.
        alerting: flows referenced by high or critical incidents.
        by_family: malicious flows per family: (flows, referenced by any, by alerting).
    """

    any_incident: FlowRates
    alerting: FlowRates
    by_family: dict[str, tuple[int, int, int]]


@dataclass(frozen=True, slots=True)
class CaptureResult:
    """The evaluation of one capture."""

    name: str
    hosts: tuple[HostOutcome, ...]
    flows: FlowOutcome

    @property
    def host_rates(self) -> HostRates:
        """Host-level confusion of this capture."""
        return HostRates.of(self.hosts)


def ratio(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator``, or ``None`` when it is undefined."""
    return numerator / denominator if denominator else None


# -- incidents ------------------------------------------------------------------------------


def incident_views(incidents: pa.Table) -> list[IncidentView]:
    """The host, severity, references and rules of each incident (``correlate`` rows)."""
    if not incidents.num_rows:
        return []
    rows = incidents.select(
        ["host.ip", "furui.severity", "event.risk_score", "furui.evidence"]
    ).to_pylist()
    views = []
    for row in rows:
        event_ids: set[str] = set()
        uids: set[str] = set()
        rules = []
        for item in row["furui.evidence"] or []:
            references = item.get("references") or {}
            event_ids.update((references.get("event") or {}).get("id") or [])
            uids.update((references.get("zeek") or {}).get("session_id") or [])
            rule = item["rule"]
            rules.append(
                RuleHit(
                    rule["id"],
                    rule["name"] or rule["id"],
                    rule["ruleset"],
                    float(item.get("contribution") or 0.0),
                )
            )
        views.append(
            IncidentView(
                host=row["host.ip"],
                severity=row["furui.severity"],
                risk=float(row["event.risk_score"]),
                event_ids=frozenset(event_ids),
                uids=frozenset(uids),
                rules=tuple(rules),
            )
        )
    return views


# -- scoring --------------------------------------------------------------------------------


def score_capture(name: str, truth: Truth, incidents: Sequence[IncidentView]) -> CaptureResult:
    """Host and event outcomes of one capture's incidents against its labels.

    Hosts with incidents that no labelled event shows are kept as ``unknown``.
    """
    by_host: dict[str, list[IncidentView]] = defaultdict(list)
    for incident in incidents:
        by_host[incident.host].append(incident)
    hosts = []
    for ip in sorted(set(truth.hosts) | set(by_host)):
        known = truth.hosts.get(ip) or HostTruth(ip, HostClass.UNKNOWN, UNKNOWN_FAMILY)
        mine = by_host.get(ip, [])
        strongest = max(mine, key=lambda i: (SEVERITIES.index(i.severity), i.risk), default=None)
        hosts.append(
            HostOutcome(
                capture=name,
                truth=known,
                severity=strongest.severity if strongest else "none",
                risk=strongest.risk if strongest else 0.0,
                incidents=len(mine),
                rules=_rules_of(mine),
            )
        )
    return CaptureResult(name=name, hosts=tuple(hosts), flows=_flow_outcome(truth.flows, incidents))


def _rules_of(incidents: Sequence[IncidentView]) -> tuple[RuleHit, ...]:
    best: dict[str, RuleHit] = {}
    for incident in incidents:
        for hit in incident.rules:
            if hit.rule_id not in best or hit.contribution > best[hit.rule_id].contribution:
                best[hit.rule_id] = hit
    return tuple(sorted(best.values(), key=lambda h: (-h.contribution, h.name)))


def _flow_outcome(flows: Flows, incidents: Sequence[IncidentView]) -> FlowOutcome:
    """Which labelled flows the incidents reference, by any incident and by alerting ones."""
    referenced_any: set[str] = set()
    referenced_alert: set[str] = set()
    for incident in incidents:
        keys = {flows.by_event[e] for e in incident.event_ids if e in flows.by_event}
        keys |= {u for u in incident.uids if u in flows.label}
        referenced_any |= keys
        if incident.severity in ALERTING:
            referenced_alert |= keys
    counts_any: Counter[tuple[int, bool]] = Counter()
    counts_alert: Counter[tuple[int, bool]] = Counter()
    families: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for key, label in flows.label.items():
        counts_any[label, key in referenced_any] += 1
        counts_alert[label, key in referenced_alert] += 1
        if label == MALICIOUS:
            tally = families[flows.family.get(key, UNKNOWN_FAMILY)]
            tally[0] += 1
            tally[1] += key in referenced_any
            tally[2] += key in referenced_alert
    return FlowOutcome(
        any_incident=FlowRates.of(counts_any),
        alerting=FlowRates.of(counts_alert),
        by_family={f: (t[0], t[1], t[2]) for f, t in sorted(families.items())},
    )


# -- over captures ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FamilyResult:
    """Hosts and malicious flows of one family, over every capture.

    Attributes:
        family: the malware family (``inbound attacks`` for attacks on exposed devices).
        role: ``infected`` (the family's hosts should be alerted) or ``attacked`` (its
            targets should not be).
        hosts: hosts of that role and family.
        alerted: of those, hosts with a high or critical incident.
        flows: malicious flows of the family.
        referenced: of those, flows referenced by any incident.
        referenced_alerting: of those, flows referenced by a high or critical incident.
        captures: where the family occurs.
    """

    family: str
    role: str
    hosts: int
    alerted: int
    flows: int
    referenced: int
    referenced_alerting: int
    captures: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RuleImpact:
    """How often one rule appears in the incidents of hosts of some classes.

    Attributes:
        rule_id: the rule (a Furui UUID, ``flow-classifier@…``, a SID or notice name).
        name: its name.
        ruleset: ``furui``, ``ml``, ``suricata``, ``zeek-notice``.
        hosts: hosts whose incidents hold the rule.
        alerted: of those, hosts alerted.
        max_contribution: the largest risk points it gave one host.
        examples: ``capture:host`` of the hosts (at most five).
    """

    rule_id: str
    name: str
    ruleset: str
    hosts: int
    alerted: int
    max_contribution: float
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Summary:
    """A whole evaluation: per capture, pooled, per family, confusion and rule drivers.

    Attributes:
        captures: per capture results.
        hosts: pooled host-level confusion.
        flows_any: pooled event level, flows referenced by any incident.
        flows_alerting: pooled event level, flows referenced by alerting incidents.
        families: per family and role.
        confusion: host class → severity of its strongest incident → hosts.
        false_positive_drivers: rules in the incidents of attacked and benign hosts.
        true_positive_drivers: rules in the incidents of infected hosts.
    """

    captures: tuple[CaptureResult, ...]
    hosts: HostRates
    flows_any: FlowRates
    flows_alerting: FlowRates
    families: tuple[FamilyResult, ...]
    confusion: dict[str, dict[str, int]]
    false_positive_drivers: tuple[RuleImpact, ...]
    true_positive_drivers: tuple[RuleImpact, ...]

    def failures(self) -> list[HostOutcome]:
        """Hosts that miss the bar: infected and not alerted, or negative and alerted."""
        return [
            h
            for c in self.captures
            for h in c.hosts
            if (h.truth.klass is HostClass.INFECTED and not h.alerted)
            or (h.truth.klass in NEGATIVE and h.alerted)
        ]


def summarise(captures: Sequence[CaptureResult]) -> Summary:
    """Pool the captures' results."""
    hosts = [h for c in captures for h in c.hosts]
    flows_any = sum((c.flows.any_incident for c in captures), FlowRates())
    flows_alerting = sum((c.flows.alerting for c in captures), FlowRates())
    confusion = {k.value: dict.fromkeys(SEVERITIES, 0) for k in HostClass}
    for host in hosts:
        confusion[host.truth.klass.value][host.severity] += 1
    return Summary(
        captures=tuple(captures),
        hosts=HostRates.of(hosts),
        flows_any=flows_any,
        flows_alerting=flows_alerting,
        families=_families(captures),
        confusion=confusion,
        false_positive_drivers=rule_impacts(h for h in hosts if h.truth.klass in NEGATIVE),
        true_positive_drivers=rule_impacts(h for h in hosts if h.truth.klass is HostClass.INFECTED),
    )


def rule_impacts(hosts: Iterable[HostOutcome]) -> tuple[RuleImpact, ...]:
    """Per rule: the hosts whose incidents hold it, most alerted first."""
    seen: dict[str, list[tuple[HostOutcome, RuleHit]]] = defaultdict(list)
    for host in hosts:
        for hit in host.rules:
            seen[hit.rule_id].append((host, hit))
    impacts = [
        RuleImpact(
            rule_id=rule_id,
            name=pairs[0][1].name,
            ruleset=pairs[0][1].ruleset,
            hosts=len(pairs),
            alerted=sum(h.alerted for h, _ in pairs),
            max_contribution=max(hit.contribution for _, hit in pairs),
            examples=tuple(f"{h.capture}:{h.truth.ip}" for h, _ in pairs[:5]),
        )
        for rule_id, pairs in seen.items()
    ]
    return tuple(sorted(impacts, key=lambda r: (-r.alerted, -r.hosts, -r.max_contribution, r.name)))


def _families(captures: Sequence[CaptureResult]) -> tuple[FamilyResult, ...]:
    hosts: dict[tuple[str, str], list[HostOutcome]] = defaultdict(list)
    where: dict[str, set[str]] = defaultdict(set)
    flows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for capture in captures:
        for host in capture.hosts:
            if host.truth.klass in (HostClass.INFECTED, HostClass.ATTACKED):
                hosts[host.truth.family, host.truth.klass.value].append(host)
                where[host.truth.family].add(capture.name)
        for family, counts in capture.flows.by_family.items():
            where[family].add(capture.name)
            for i, value in enumerate(counts):
                flows[family][i] += value
    keys = set(hosts) | {(f, _role_of(f, hosts)) for f in flows}
    return tuple(
        FamilyResult(
            family=family,
            role=role,
            hosts=len(hosts.get((family, role), [])),
            alerted=sum(h.alerted for h in hosts.get((family, role), [])),
            flows=flows[family][0] if family in flows else 0,
            referenced=flows[family][1] if family in flows else 0,
            referenced_alerting=flows[family][2] if family in flows else 0,
            captures=tuple(sorted(where[family])),
        )
        for family, role in sorted(keys, key=lambda k: (k[1] != "infected", k[0]))
    )


def _role_of(family: str, hosts: Mapping[tuple[str, str], list[HostOutcome]]) -> str:
    """The role of a family's hosts: infected unless only its targets were seen."""
    if (family, "infected") in hosts or (family, "attacked") not in hosts:
        return "infected"
    return "attacked"
