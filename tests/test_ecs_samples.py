"""Furui's events carry the fields Elastic's integrations set, with the same values.

Each document in ``tests/data/ecs`` is Elastic's output for one raw Zeek or Suricata line
(its ``event.original``). The line is written to a file of the right log name, normalised
with ``load_events``, and every field of Elastic's document is looked up in Furui's event.
Only shipper metadata and the few listed exceptions are not compared.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from correlator.normalise.mapping import load_mapping
from correlator.testing import load_events

ECS = Path(__file__).resolve().parent / "data" / "ecs"

#: Fields about the shipping, not the event: set by Elastic Agent, Filebeat or the index.
SHIPPER = (
    "@metadata.*",
    "agent.*",
    "data_stream.*",
    "ecs.*",
    "elastic_agent.*",
    "input.*",
    "tags",
    "host.name",
    "log.file.path",
    "log.offset",
    "event.created",
    "event.ingested",
    "event.agent_id_status",
    "event.original",
)

#: Elastic fields Furui does not reproduce, each with the reason.
EXCEPTIONS = {
    "event.id": "Elastic copies the Zeek uid (Furui keeps it in zeek.session_id); "
    "Furui's event.id is unique per record",
    "*.address": "Elastic keeps the raw address beside *.ip; Furui keeps only *.ip, same value",
    "*.geo.*": "GeoIP enrichment needs MaxMind databases Furui does not ship",
    "*.as.*": "ASN enrichment needs MaxMind databases Furui does not ship",
    "user_agent.name": "needs a user-agent parser; user_agent.original is compared",
    "user_agent.version": "needs a user-agent parser; user_agent.original is compared",
    "user_agent.device.name": "needs a user-agent parser; user_agent.original is compared",
    "observer.*": "constants Elastic adds to forwarded events only; event.module says which sensor",
}


@dataclass(frozen=True)
class Sample:
    """One Elastic document and where it came from."""

    name: str
    module: str
    dataset: str
    document: dict[str, object]

    @property
    def original(self) -> str:
        event = self.document["event"]
        assert isinstance(event, dict)
        return str(event["original"])


def _documents(path: Path) -> list[dict[str, object]]:
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    expected = loaded.get("expected", [loaded])
    assert isinstance(expected, list)
    return expected


def _samples() -> list[Sample]:
    found = []
    for path in sorted(ECS.rglob("*.json")):
        module, dataset = path.relative_to(ECS).parts[:2]
        for number, document in enumerate(_documents(path)):
            event = document.get("event")
            if isinstance(event, dict) and "original" in event:
                name = f"{path.relative_to(ECS).as_posix()}#{number}"
                found.append(Sample(name, module, dataset, document))
    return found


SAMPLES = _samples()


def _flatten(value: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Dotted leaves of a document; empty objects (left behind by renames) have none."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, value


def _exception(name: str) -> str | None:
    return next((pattern for pattern in EXCEPTIONS if fnmatchcase(name, pattern)), None)


def _is_shipper(name: str) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in SHIPPER)


def _zeek_log(dataset: str) -> str:
    """The Zeek log path whose table has Elastic's dataset name (``connection`` → ``conn``)."""
    logs = load_mapping("zeek").logs
    return next(log for log, table in logs.items() if table.dataset == f"zeek.{dataset}")


def _event(name: str, directory: Path) -> dict[str, object]:
    sample = next(s for s in SAMPLES if s.name == name)
    if sample.module == "zeek":
        path = directory / f"{_zeek_log(sample.dataset)}.log"
    else:
        path = directory / "eve.json"
    path.write_text(sample.original + "\n", encoding="utf-8")
    loaded = load_events(path)
    assert not loaded.rejects, [r.reason for r in loaded.rejects]
    assert len(loaded.streams) == 1, sorted(loaded.streams)
    (table,) = loaded.streams.values()
    assert table.num_rows == 1
    event: dict[str, object] = table.to_pylist()[0]
    return event


def _same(ours: object, elastic: object) -> bool:
    """Elastic stores dates as ISO text in milliseconds; everything else compares as is."""
    if isinstance(ours, dt.datetime) and isinstance(elastic, str):
        parsed = dt.datetime.fromisoformat(elastic.replace("Z", "+00:00"))
        return ours.replace(microsecond=ours.microsecond // 1000 * 1000) == parsed
    return ours == elastic


def _compared(sample: Sample) -> list[tuple[str, object]]:
    return [
        (name, value)
        for name, value in _flatten(sample.document)
        if not _is_shipper(name) and _exception(name) is None
    ]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ecs")


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_fields_elastic_sets_have_the_same_value(sample: Sample, workdir: Path) -> None:
    directory = workdir / sample.name.replace("/", "_").replace("#", "_")
    directory.mkdir(exist_ok=True)
    event = _event(sample.name, directory)
    compared = _compared(sample)
    assert compared
    missing = [name for name, _ in compared if name not in event]
    differ = [
        f"{name}: Elastic {value!r}, Furui {event[name]!r}"
        for name, value in compared
        if name in event and not _same(event[name], value)
    ]
    assert not missing, f"fields Elastic sets that Furui lacks: {missing}"
    assert not differ, "\n".join(differ)


def test_every_zeek_sample_has_a_mapping_table() -> None:
    datasets = {s.dataset for s in SAMPLES if s.module == "zeek"}
    tables = {t.dataset for t in load_mapping("zeek").logs.values()}
    assert {f"zeek.{d}" for d in datasets} <= tables


def test_samples_cover_both_sensors() -> None:
    assert {s.module for s in SAMPLES} == {"zeek", "suricata"}
    assert all(s.original.startswith("{") for s in SAMPLES)


def test_every_exception_is_still_needed() -> None:
    """An exception no sample uses is stale and must go (a fixed gap stays fixed)."""
    used = {
        _exception(name)
        for s in SAMPLES
        for name, _ in _flatten(s.document)
        if not _is_shipper(name)
    }
    assert set(EXCEPTIONS) <= used, sorted(set(EXCEPTIONS) - used)


@pytest.mark.parametrize(
    ("name", "shipper", "exception"),
    [
        ("agent.version", True, None),
        ("event.original", True, None),
        ("source.address", False, "*.address"),
        ("destination.geo.city_name", False, "*.geo.*"),
        ("event.id", False, "event.id"),
        ("source.ip", False, None),
        ("event.dataset", False, None),
        ("zeek.session_id", False, None),
    ],
)
def test_only_metadata_and_listed_exceptions_are_skipped(
    name: str, shipper: bool, exception: str | None
) -> None:
    assert _is_shipper(name) is shipper
    assert _exception(name) == exception


MOMENT = dt.datetime(2019, 1, 11, 6, 33, 37, 857497, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("ours", "elastic", "same"),
    [
        (MOMENT, "2019-01-11T06:33:37.857Z", True),
        (MOMENT, "2019-01-11T06:33:37.858Z", False),
        ([120.0], [120], True),
        (["AA"], ["AA", "RD"], False),
        ("1.2", "1.2", True),
        ("1.2", 1.2, False),
    ],
)
def test_values_compare_as_elastic_stores_them(ours: object, elastic: object, same: bool) -> None:
    assert _same(ours, elastic) is same
