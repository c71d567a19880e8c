"""The mapping tables as a corpus: they load, they are consistent, and real logs go through.

Static checks read the mapping files (every transform, lookup table and derive input they
name exists; every event category and type is an ECS value). Data checks normalise every
log type found in the shared datasets (``../shared/datasets``, read directly).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from correlator.normalise.mapping import LogMapping, MappingFile, load_mapping, load_zeek_types
from correlator.normalise.transforms import TRANSFORMS
from correlator.normalise.zeek_types import arrow_type, element_type
from correlator.schema.event import CORE_NAMES
from correlator.sources.files import LogFile, discover
from correlator.sources.reader import Position, ReadLimits, read_log
from correlator.testing import Loaded, load_events


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
MISSING = f"{SHARED} is absent: the shared datasets live beside the repository (../shared)"
FILES = ("zeek", "suricata")

# ECS 8 categorisation values (ecs-allowed-values-event-kind/category/type/outcome)
ECS_KIND = _words("alert asset enrichment event metric state pipeline_error signal")
ECS_CATEGORY = _words(
    "api authentication configuration database driver email file host iam intrusion_detection "
    "library malware network package process registry session threat vulnerability web"
)
ECS_TYPE = _words(
    "access admin allowed change connection creation deletion denied device end error group "
    "indicator info installation protocol start user"
)
ECS_OUTCOME = frozenset({"success", "failure", "unknown"})

#: Transform options a transform cannot do without.
NEEDS_TABLE = _words("lookup lookup_list flags presence is_equal is_below")
NEEDS_KEY = _words(
    "constant extract where_equal dn_part dn_parts is_equal is_below elapsed strip_prefix rstrip "
    "pluck first_field"
)
#: Transforms whose result comes from a lookup table.
TABLE_VALUED = _words("lookup lookup_list presence is_equal is_below")

#: Source fields mapped after Elastic's pipeline that no Zeek version in zeek_types.toml logs
#: (Bro 2.x, Corelight or package fields); they map when present.
LEGACY = {
    "dhcp": {"client_port", "server_port"},
    "ftp": {"data_channel.orig_p"},
    "kerberos": {"auth_ticket", "new_ticket", "error_code"},
    "notice": {"f.id", "f.parent_id", "f.source", "f.is_orig", "f.seen_bytes", "f.total_bytes"},
    "ssl": {
        "cert_chain",
        "client_cert_chain",
        "validation_code",
        "not_valid_before",
        "not_valid_after",
        "resp_certificate_sha1",
    },
    "x509": {"id", "certificate.cn", "logcert"},
}

#: Zeek tables with no real log in the shared datasets: the ECS samples and the static
#: checks cover them. Adding such a log to the datasets must shrink this set.
NO_REAL_LOG = _words(
    "dnp3 intel irc known_modbus ldap mysql radius signatures smb_cmd socks traceroute"
)


# --- the mapping files -------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_mapping_file_loads(name: str) -> None:
    mapping = load_mapping(name)
    assert mapping.logs
    assert all(table.dataset.startswith(f"{name}.") for table in mapping.logs.values())


def test_zeek_types_load_and_are_zeek_types() -> None:
    scalars = _words("time interval double count int port bool addr subnet string enum pattern")
    bad = [
        f"{log}.{field}: {kind}"
        for log, fields in load_zeek_types().items()
        for field, kind in fields.items()
        if (element_type(kind) or kind) not in scalars
    ]
    assert not bad
    kinds = {kind for fields in load_zeek_types().values() for kind in fields.values()}
    assert all(arrow_type(kind) for kind in kinds)


def test_every_log_with_a_table_has_types() -> None:
    types = load_zeek_types()
    assert set(load_mapping("zeek").logs) <= set(types)


def _uses(mapping: MappingFile) -> Iterator[tuple[str, str, str, str | None, str | None]]:
    """(table, where, op, table option, key option) of every target and derive."""
    common = LogMapping(dataset="_common", fields=mapping.common)
    for log, table in [("_common", common), *mapping.logs.items()]:
        for source in table.fields:
            for target in table.targets(source) or ():
                yield log, f"{source} → {target.to}", target.op, target.table, target.key
        for derived in table.derive:
            yield log, f"derive {derived.to}", derived.op, derived.table, derived.key


@pytest.mark.parametrize("name", FILES)
def test_every_transform_named_exists_with_its_options(name: str) -> None:
    mapping = load_mapping(name)
    problems = []
    for log, where, op, table, key in _uses(mapping):
        if op not in TRANSFORMS:
            problems.append(f"[{log}] {where}: unknown transform {op}")
        if op in NEEDS_TABLE and table not in mapping.tables:
            problems.append(f"[{log}] {where}: {op} needs a table of _tables, got {table!r}")
        if op in NEEDS_KEY and key is None:
            problems.append(f"[{log}] {where}: {op} needs a key")
        if op == "extract" and key is not None and "(?P<value>" not in key:
            problems.append(f"[{log}] {where}: extract needs a (?P<value>…) group")
        if op == "extract" and key is not None:
            re.compile(key)
    assert not problems, "\n".join(problems)


def test_an_unknown_transform_fails_at_load_time() -> None:
    with pytest.raises(ValidationError, match="unknown transform"):
        LogMapping.model_validate({"dataset": "zeek.x", "fields": {"a": {"to": "b", "op": "nope"}}})
    with pytest.raises(ValidationError, match="unknown transform"):
        LogMapping.model_validate(
            {"dataset": "zeek.x", "derive": [{"to": "b", "op": "nope", "args": ["a"]}]}
        )


def _produced(name: str, log: str) -> set[str]:
    """Every name a table's fields can produce, before its derives."""
    table = load_mapping(name).for_log(log)
    assert table is not None
    names = set(CORE_NAMES)
    for source in table.fields:
        names |= {t.to for t in table.targets(source) or ()}
    known = load_zeek_types().get(log, {}) if name == "zeek" else {}
    names |= {f"{table.prefix}.{f}" for f in known if f not in table.fields}
    return names


@pytest.mark.parametrize("name", FILES)
def test_derive_inputs_are_produced_by_the_table(name: str) -> None:
    mapping = load_mapping(name)
    problems = []
    for log, table in mapping.logs.items():
        names = _produced(name, log)
        for derived in table.derive:
            unknown = [
                a
                for a in derived.args
                if a not in names and not (name == "suricata" and a.startswith("suricata.eve."))
            ]
            if unknown:
                problems.append(f"[{log}] derive {derived.to}: nothing produces {unknown}")
            names.add(derived.to)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", FILES)
def test_categorisation_uses_ecs_values(name: str) -> None:
    mapping = load_mapping(name)
    problems = []
    for log, table in mapping.logs.items():
        if table.kind not in ECS_KIND:
            problems.append(f"[{log}] kind {table.kind}")
        problems += [f"[{log}] category {c}" for c in table.category if c not in ECS_CATEGORY]
        problems += [f"[{log}] type {t}" for t in table.type if t not in ECS_TYPE]
    for log, where, op, option, _ in _uses(mapping):
        allowed = {
            "event.type": ECS_TYPE,
            "event.category": ECS_CATEGORY,
            "event.outcome": ECS_OUTCOME,
        }.get(where.rsplit(" ", 1)[-1])
        if allowed is None or op not in TABLE_VALUED:
            continue
        assert option is not None
        values = {v for text in mapping.tables[option].values() for v in text.split(",") if v}
        problems += [f"[{log}] {where}: {v} (table {option})" for v in values - allowed]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("log", sorted(load_mapping("zeek").logs))
def test_zeek_table_names_known_zeek_fields(log: str) -> None:
    table = load_mapping("zeek").logs[log]
    known = set(load_zeek_types()[log]) | LEGACY.get(log, set())
    assert set(table.fields) - known == set()


def test_legacy_fields_are_not_in_the_known_schema() -> None:
    types = load_zeek_types()
    assert all(not names & set(types[log]) for log, names in LEGACY.items())


# --- real logs ---------------------------------------------------------------------------


@cache
def _groups() -> dict[tuple[str, str], tuple[LogFile, ...]]:
    groups: dict[tuple[str, str], list[LogFile]] = defaultdict(list)
    for log in discover([SHARED]).logs:
        groups[(log.format.name.lower(), log.log_type)].append(log)
    return {key: tuple(logs) for key, logs in sorted(groups.items())}


def _group_params() -> list[object]:
    if not SHARED.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING))]
    return [pytest.param(key, id=f"{key[0]}-{key[1]}") for key in _groups()]


@cache
def _loaded(key: tuple[str, str]) -> Loaded:
    return load_events(*(log.path for log in _groups()[key]))


@cache
def _raw(key: tuple[str, str]) -> tuple[frozenset[str], dict[str, int]]:
    """Fields the real files of a group hold (TSV header or JSON keys) and their set counts."""
    names: set[str] = set()
    counts: dict[str, int] = defaultdict(int)
    for log in _groups()[key]:
        for block in read_log(log, Position(), ReadLimits()):
            for batch in block.batches:
                names |= set(batch.table.column_names)
                for name in batch.table.column_names:
                    column = batch.table.column(name)
                    counts[name] += len(column) - column.null_count
    return frozenset(names), dict(counts)


def _raw_columns(key: tuple[str, str]) -> frozenset[str]:
    return _raw(key)[0]


def _nulls(table: pa.Table, name: str) -> int:
    return int(table.column(name).null_count)


@pytest.mark.parametrize("key", _group_params())
def test_real_logs_normalise_without_rejects(key: tuple[str, str]) -> None:
    loaded = _loaded(key)
    assert not loaded.rejects, sorted({r.reason for r in loaded.rejects})[:5]


@pytest.mark.parametrize("key", _group_params())
def test_core_columns_are_filled(key: tuple[str, str]) -> None:
    loaded = _loaded(key)
    filled: dict[str, int] = defaultdict(int)
    for stream, events in loaded.streams.items():
        for name in ("@timestamp", "event.id", "event.module", "event.dataset", "event.kind"):
            assert _nulls(events, name) == 0, f"{stream}: {name}"
        assert pc.count_distinct(events.column("event.id")).as_py() == events.num_rows
        for name in ("source.ip", "destination.ip"):
            filled[name] += events.num_rows - _nulls(events, name)
        # a flow with both addresses and a transport gets a Community ID
        flow = pc.and_(
            pc.and_(
                pc.is_valid(events.column("source.ip")),
                pc.is_valid(events.column("destination.ip")),
            ),
            pc.is_valid(events.column("network.transport")),
        )
        missing = pc.and_(flow, pc.is_null(events.column("network.community_id")))
        assert not pc.any(missing).as_py(), stream
    # every record that names its endpoints has source.ip and destination.ip
    counts = _raw(key)[1]
    for ecs, fields in (
        ("source.ip", ("id.orig_h", "src_ip")),
        ("destination.ip", ("id.resp_h", "dest_ip")),
    ):
        assert filled[ecs] >= max(counts.get(field, 0) for field in fields), ecs


@pytest.mark.parametrize("key", _group_params())
def test_event_categorisation_is_ecs(key: tuple[str, str]) -> None:
    for stream, events in _loaded(key).streams.items():
        assert set(pc.unique(events.column("event.kind")).to_pylist()) <= ECS_KIND, stream
        categories = pc.unique(pc.list_flatten(events.column("event.category"))).to_pylist()
        types = pc.unique(pc.list_flatten(events.column("event.type"))).to_pylist()
        assert set(categories) <= ECS_CATEGORY, stream
        assert set(types) <= ECS_TYPE, stream
        if "event.outcome" in events.column_names:
            outcomes = set(pc.unique(events.column("event.outcome")).drop_null().to_pylist())
            assert outcomes <= ECS_OUTCOME, stream


def _zeek_params() -> list[object]:
    if not SHARED.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING))]
    real = {log for (fmt, log) in _groups() if fmt.startswith("zeek")}
    return [pytest.param(log, id=log) for log in sorted(load_mapping("zeek").logs) if log in real]


@pytest.mark.parametrize("log", _zeek_params())
def test_fields_named_in_the_mapping_reach_the_events(log: str) -> None:
    mapping = load_mapping("zeek")
    table = mapping.for_log(log)
    assert table is not None
    for key in [k for k in _groups() if k[1] == log]:
        events = _loaded(key).streams.get(table.dataset)
        if events is None:  # header-only files
            continue
        present = _raw_columns(key) | set(load_zeek_types()[log])
        expected = {t.to for f in present for t in table.targets(f) or ()}
        produced = set(events.column_names)
        for derived in table.derive:
            if set(derived.args) & (produced | expected):
                expected.add(derived.to)
        assert expected - produced == set(), key


def test_tables_without_real_logs_are_listed() -> None:
    if not SHARED.exists():
        pytest.skip(MISSING)
    real = {log for (fmt, log) in _groups() if fmt.startswith("zeek")}
    assert set(load_mapping("zeek").logs) - real == NO_REAL_LOG


def test_every_eve_event_type_has_a_table() -> None:
    if not SHARED.exists():
        pytest.skip(MISSING)
    kinds = {s.rsplit(".", 1)[-1] for s in _loaded(("suricata_eve", "eve")).streams}
    assert kinds
    assert kinds <= set(load_mapping("suricata").logs)


def _streams() -> list[object]:
    if not SHARED.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING))]
    names = sorted({s for key in _groups() for s in _loaded(key).streams})
    return [pytest.param(s, id=s) for s in names]


@pytest.mark.parametrize("stream", _streams())
def test_no_field_is_both_a_value_and_an_object(stream: str) -> None:
    names = set()
    for key in _groups():
        events = _loaded(key).streams.get(stream)
        names |= set(events.column_names) if events is not None else set()
    clashes = sorted(n for n in names if any(m.startswith(f"{n}.") for m in names))
    assert not clashes


# --- properties of the values ------------------------------------------------------------


def _all(stream: str) -> Iterator[pa.Table]:
    for key in _groups():
        events = _loaded(key).streams.get(stream)
        if events is not None and events.num_rows:
            yield events


@pytest.mark.parametrize("key", _group_params())
def test_related_fields_are_distinct_and_non_empty(key: tuple[str, str]) -> None:
    for stream, events in _loaded(key).streams.items():
        for name in [n for n in events.column_names if n.startswith("related.")]:
            values = events.column(name).combine_chunks()
            flat = values.flatten()
            assert not pc.any(pc.equal(flat, "")).as_py(), f"{stream}: {name}"
            parents = np.repeat(
                np.arange(len(values)), pc.list_value_length(values).fill_null(0).to_numpy()
            )
            pairs = set(zip(parents.tolist(), flat.to_pylist(), strict=True))
            assert len(pairs) == len(flat), f"{stream}: {name} repeats a value"


@pytest.mark.parametrize("key", _group_params())
def test_counters_add_up(key: tuple[str, str]) -> None:
    for stream, events in _loaded(key).streams.items():
        names = set(events.column_names)
        if {"network.bytes", "source.bytes", "destination.bytes"} <= names:
            total = pc.add(events.column("source.bytes"), events.column("destination.bytes"))
            assert not pc.any(pc.not_equal(events.column("network.bytes"), total)).as_py(), stream
        if "event.duration" in names:
            shortest = pc.min(events.column("event.duration")).as_py()
            assert shortest is None or shortest >= 0, stream


def test_certificate_name_parts_come_from_the_distinguished_name() -> None:
    if not SHARED.exists():
        pytest.skip(MISSING)
    checked = 0
    for events in _all("zeek.x509"):
        subjects = events.column("file.x509.subject.distinguished_name").to_pylist()
        common_names = events.column("file.x509.subject.common_name").to_pylist()
        for dn, names in zip(subjects, common_names, strict=True):
            for name in names or []:
                assert f"CN={name}" in re.sub(r"\\+,", "", dn)
                checked += 1
    assert checked


def test_resolved_addresses_are_among_the_answers() -> None:
    if not SHARED.exists():
        pytest.skip(MISSING)
    checked = 0
    for events in _all("zeek.dns"):
        for row in events.select(["dns.resolved_ip", "zeek.dns.answers"]).to_pylist():
            assert set(row["dns.resolved_ip"] or []) <= set(row["zeek.dns.answers"] or [])
            checked += len(row["dns.resolved_ip"] or [])
    assert checked


def test_mac_addresses_are_in_ecs_form() -> None:
    if not SHARED.exists():
        pytest.skip(MISSING)
    ecs = re.compile(r"^[0-9A-F]{2}(-[0-9A-F]{2}){5}$")
    for stream in ("zeek.connection", "suricata.eve.alert", "suricata.eve.flow"):
        for events in _all(stream):
            for name in ("source.mac", "destination.mac"):
                if name in events.column_names:
                    values = events.column(name).drop_null().to_pylist()
                    assert all(ecs.match(v) for v in values), (stream, name)
