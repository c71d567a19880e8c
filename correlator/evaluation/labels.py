"""What the labels of a capture say: host classes and labelled flows (pure, no I/O).

The definitions are the package's (``correlator.evaluation``); this module applies them to
normalised events that carry label fields, or to a host list.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.ml.dataset import BENIGN_FAMILY, families_of, map_labels

#: Detailed-label text of malicious events that are attacks on the device, not by it.
ATTACK_PATTERN: Final = "External-Attack"
#: Families the model's table (``ml.dataset.FAMILIES``) does not name, from the READMEs
#: of the shared datasets: (text in the capture name, family).
EXTRA_FAMILIES: Final = (("009-zeek-malicious", "Kovter"), ("Botnet-219", "Kovter"))
UNKNOWN_FAMILY: Final = "unknown"
MALICIOUS: Final = 1
BENIGN: Final = 0


class HostClass(enum.StrEnum):
    """What the labels say about an internal host."""

    INFECTED = "infected"
    ATTACKED = "attacked"
    BENIGN = "benign"
    UNKNOWN = "unknown"


#: Classes that are negatives: they must not get an alert.
NEGATIVE: Final = frozenset({HostClass.ATTACKED, HostClass.BENIGN})


@dataclass(frozen=True, slots=True)
class LabelColumns:
    """Which event fields hold the labels.

    Attributes:
        label: the label field: a log column name (``label``, matched as the last part of
            every stream's field names, ``zeek.connection.label``, ``zeek.http.label`` …)
            or one full field name.
        detail: detailed-label fields, looked up the same way; the first present is used.
        attack_pattern: detailed-label text marking an attack on the device.
    """

    label: str = "label"
    detail: tuple[str, ...] = ("detailedlabel", "detailed-label")
    attack_pattern: str = ATTACK_PATTERN


@dataclass(frozen=True, slots=True)
class HostTruth:
    """One internal host and what its labelled events say.

    Attributes:
        ip: the host.
        klass: its class (definitions in ``correlator.evaluation``).
        family: for an infected host the malware family of most of its malicious events;
            for an attacked host the family of the attacks; else ``benign``/``unknown``.
        malicious_out: malicious events it originated (attacks on devices excluded).
        malicious_in: malicious events of which it is the target (or attacks on it).
        benign: benign events it took part in.
        unknown: unknown events it took part in.
    """

    ip: str
    klass: HostClass
    family: str
    malicious_out: int = 0
    malicious_in: int = 0
    benign: int = 0
    unknown: int = 0


@dataclass(frozen=True, slots=True)
class Flows:
    """Labelled flows of a capture (module docstring), one entry per flow key.

    Attributes:
        label: per flow key (uid, or event id without one): 1, 0 or -1 (unknown).
        family: per malicious flow key, its family.
        by_event: event id → flow key, for every labelled event.
    """

    label: dict[str, int] = field(default_factory=dict)
    family: dict[str, str] = field(default_factory=dict)
    by_event: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Truth:
    """Everything the labels say about one capture."""

    hosts: dict[str, HostTruth]
    flows: Flows


def labelled_events(streams: Mapping[str, pa.Table], columns: LabelColumns) -> pa.Table:
    """Every event that carries a label field, as one table.

    Columns: ``event_id``, ``uid`` (null without one), ``source``, ``destination``,
    ``direction`` (``network.direction``), ``label`` (1, 0, -1) and ``detail`` (text).
    Streams without the label field are left out.
    """
    parts = []
    for name in sorted(streams):
        table = streams[name]
        label = _column(table, (columns.label,))
        if label is None:
            continue
        detail = _column(table, columns.detail)
        rows = table.num_rows
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(label, pa.string())))
        parts.append(
            pa.table(
                {
                    "event_id": _text(table, "event.id", rows),
                    "uid": _text(table, "zeek.session_id", rows),
                    "source": _text(table, "source.ip", rows),
                    "destination": _text(table, "destination.ip", rows),
                    "direction": _text(table, "network.direction", rows),
                    "label": pa.array(map_labels(lowered), pa.int8()),
                    "detail": (
                        pc.cast(detail, pa.string()).fill_null("")
                        if detail is not None
                        else pa.array([""] * rows, pa.string())
                    ),
                }
            )
        )
    if not parts:
        return pa.table(
            {
                name: pa.array([], pa.int8() if name == "label" else pa.string())
                for name in ("event_id", "uid", "source", "destination", "direction", "label")
            }
        ).append_column("detail", pa.array([], pa.string()))
    return pa.concat_tables(parts)


def truth_of(events: pa.Table, capture: str, attack_pattern: str = ATTACK_PATTERN) -> Truth:
    """Host classes and labelled flows of one capture (definitions: ``correlator.evaluation``).

    One pass over the labelled records in Python: tens of thousands per capture, once per
    evaluation, never on the pipeline's path.

    Args:
        events: ``labelled_events`` of the capture.
        capture: the capture's name (a family may be named after it).
        attack_pattern: detailed-label text of attacks on a device.
    """
    detail = events.column("detail").combine_chunks()
    families = families_of(capture, detail)
    families = np.where(families == UNKNOWN_FAMILY, _extra_family(capture), families)
    attack = np.asarray(
        pc.match_substring(detail, attack_pattern).fill_null(False).to_numpy(zero_copy_only=False)
        if attack_pattern
        else np.zeros(events.num_rows, dtype=bool),
        dtype=bool,
    )
    columns = events.select(["event_id", "uid", "source", "destination", "direction", "label"])
    rows = columns.to_pydict()
    internal = _internal_addresses(rows["source"], rows["destination"], rows["direction"])
    tallies: dict[str, Counter[str]] = defaultdict(Counter)
    host_families: dict[str, Counter[str]] = defaultdict(Counter)
    flows = Flows()
    for i, label in enumerate(rows["label"]):
        source, destination = rows["source"][i], rows["destination"][i]
        ends = [(ip, role) for ip, role in ((source, "out"), (destination, "in")) if ip in internal]
        if label == MALICIOUS:
            for ip, role in ends:
                kind = "malicious_in" if attack[i] or role == "in" else "malicious_out"
                tallies[ip][kind] += 1
                host_families[ip][f"{kind}|{families[i]}"] += 1
        else:
            for ip, _ in ends:
                tallies[ip]["benign" if label == BENIGN else "unknown"] += 1
        key = rows["uid"][i] or rows["event_id"][i]
        flows.by_event[rows["event_id"][i]] = key
        if label > flows.label.get(key, -2):
            flows.label[key] = label
            if label == MALICIOUS:
                flows.family[key] = str(families[i])
    hosts = {ip: _host(ip, tallies[ip], host_families[ip]) for ip in sorted(tallies)}
    return Truth(hosts=hosts, flows=flows)


def host_class(text: str) -> HostClass:
    """The class a host-list label names.

    ``infected``/``malicious``/``compromised``, ``attacked``/``victim``,
    ``benign``/``normal``/``clean``; anything else is unknown.
    """
    word = text.strip().lower()
    if word.startswith(("infected", "malicious", "compromised")):
        return HostClass.INFECTED
    if word.startswith(("attacked", "victim")):
        return HostClass.ATTACKED
    if word.startswith(("benign", "normal", "clean")):
        return HostClass.BENIGN
    return HostClass.UNKNOWN


def with_host_labels(truth: Truth, labels: Mapping[str, tuple[HostClass, str]]) -> Truth:
    """``truth`` with host classes taken from a host list instead of the flows' labels.

    A host list names hosts whose state is known from elsewhere (an incident report, an
    asset inventory). Listed hosts get the listed class (and family, if given); hosts the
    list does not name become unknown; listed hosts the logs never show are added. The
    labelled flows (event level) are kept.
    """
    hosts = {
        ip: replace(host, klass=HostClass.UNKNOWN, family=UNKNOWN_FAMILY)
        for ip, host in truth.hosts.items()
    }
    for ip, (klass, family) in labels.items():
        base = hosts.get(ip, HostTruth(ip, klass, family))
        hosts[ip] = replace(base, klass=klass, family=family or _default_family(klass))
    return Truth(hosts=dict(sorted(hosts.items())), flows=truth.flows)


def _default_family(klass: HostClass) -> str:
    return BENIGN_FAMILY if klass is HostClass.BENIGN else UNKNOWN_FAMILY


def _host(ip: str, tally: Counter[str], families: Counter[str]) -> HostTruth:
    if tally["malicious_out"]:
        klass, prefix = HostClass.INFECTED, "malicious_out|"
    elif tally["malicious_in"]:
        klass, prefix = HostClass.ATTACKED, "malicious_in|"
    elif tally["benign"]:
        klass, prefix = HostClass.BENIGN, ""
    else:
        klass, prefix = HostClass.UNKNOWN, ""
    named = [
        (n, f.removeprefix(prefix)) for f, n in families.items() if prefix and f.startswith(prefix)
    ]
    family = max(named)[1] if named else _default_family(klass)
    return HostTruth(
        ip,
        klass,
        family,
        tally["malicious_out"],
        tally["malicious_in"],
        tally["benign"],
        tally["unknown"],
    )


def _internal_addresses(
    sources: Sequence[str | None],
    destinations: Sequence[str | None],
    directions: Sequence[str | None],
) -> frozenset[str]:
    """Addresses that some event marks internal (``network.direction``).

    Taken over the whole capture because only some logs carry Zeek's local flags: a host
    that conn.log marks local is internal in its http and ssl records too.
    """
    found: set[str] = set()
    for source, destination, direction in zip(sources, destinations, directions, strict=True):
        if direction in ("internal", "outbound") and source:
            found.add(source)
        if direction in ("internal", "inbound") and destination:
            found.add(destination)
    return frozenset(found)


def _extra_family(capture: str) -> str:
    return next((family for text, family in EXTRA_FAMILIES if text in capture), UNKNOWN_FAMILY)


def _column(table: pa.Table, names: Sequence[str]) -> pa.ChunkedArray | None:
    for name in names:
        for column in table.column_names:
            if column == name or column.endswith(f".{name}"):
                return table.column(column)
    return None


def _text(table: pa.Table, name: str, rows: int) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(rows, pa.string())
    values = pc.cast(table.column(name).combine_chunks(), pa.string())
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
