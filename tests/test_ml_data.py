"""Labelled data for the model: the IoT-23 CSV reader, label mapping, families, features.

All on the real shared captures; expected values are read from the files themselves (with
the standard ``csv`` module), never typed in.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from correlator.ml import features
from correlator.ml.dataset import families_of, load_labelled, map_labels
from correlator.sources.base import LogFormat
from correlator.sources.files import recognise
from correlator.sources.reader import ReadLimits
from correlator.testing import load_events
from tests.conftest import shared

IOT = "iot23-labelled-subset"
SME = ("stratosphere-ctu-sme-11-labelled", "zeek-labeled", "conn.log.labeled")
MIRAI = "CTU-Malware-Capture-44-1-labeled.csv"


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "name",
    [
        "CTU-Honeypot-Capture-4-1-labeled.csv",  # ts truncated to whole seconds
        "CTU-Honeypot-Capture-5-1-labeled.csv",
        MIRAI,
        "CTU-Malware-Capture-20-1-labeled.csv",
        "CTU-Malware-Capture-8-1-labeled.csv",  # tunnel_parents "(empty)"
    ],
)
def test_iot23_csv_reads_as_zeek_conn(name: str) -> None:
    path = shared(IOT, name)
    found = recognise(path)
    assert not isinstance(found, Path)
    assert found.format is LogFormat.ZEEK_CSV  # type: ignore[union-attr]
    assert found.log_type == "conn"  # type: ignore[union-attr]
    rows = _csv_rows(path)
    # small blocks cut the file many times: every row is read once, none rejected
    loaded = load_events(path, limits=ReadLimits(block_bytes=16384))
    assert not loaded.rejects
    events = loaded.stream("zeek.connection")
    assert events.num_rows == len(rows)
    assert events.column("zeek.session_id").to_pylist() == [r["uid"] for r in rows]
    labels = Counter(events.column("zeek.connection.label").to_pylist())
    assert labels == Counter(r["label"] for r in rows)
    first = events.slice(0, 1).to_pylist()[0]
    assert first["source.ip"] == rows[0]["id.orig_h"]
    assert first["destination.port"] == int(rows[0]["id.resp_p"])
    assert first["network.transport"] == rows[0]["proto"]
    assert first["@timestamp"].timestamp() == pytest.approx(float(rows[0]["ts"]), abs=1e-6)
    expected_bytes = rows[0]["orig_ip_bytes"]
    assert first["source.bytes"] == (int(expected_bytes) if expected_bytes else None)


def test_empty_csv_cells_are_unset_not_zero() -> None:
    path = shared(IOT, MIRAI)
    rows = _csv_rows(path)
    events = load_events(path).stream("zeek.connection")
    durations = events.column("event.duration").to_pylist()
    for row, duration in zip(rows, durations, strict=True):
        if row["duration"] == "":
            assert duration is None
        else:
            assert duration == round(float(row["duration"]) * 1e9)


def test_labels_follow_stratosphere_convention() -> None:
    raw = pa.array(
        ["malicious", "benign", "background", "unknown", "(empty)", None, "malicious   c&c"]
    )
    assert map_labels(raw).tolist() == [1, 0, -1, -1, -1, -1, 1]


def test_families_from_detailed_label_then_capture() -> None:
    detail = pa.array(["From_malicious-To_malicious-Malware_data_exfiltration-RemcosRAT"])
    assert families_of("x/conn.log.labeled", detail).tolist() == ["RemcosRAT"]
    assert families_of(
        "iot/CTU-Malware-Capture-20-1-labeled.csv", pa.array(["C&C-Torii"])
    ).tolist() == ["Torii"]
    assert families_of(
        "iot/CTU-Malware-Capture-8-1-labeled.csv", pa.array([None], pa.string())
    ).tolist() == ["Hakai"]
    assert families_of("unseen/capture.csv", pa.array(["C&C"])).tolist() == ["unknown"]


def test_labelled_flows_drop_unknown_labels_and_keep_context() -> None:
    path = shared(*SME)
    data = load_labelled([path])
    raw = Counter(
        load_events(path).stream("zeek.connection").column("zeek.connection.label").to_pylist()
    )
    # Unknown rows are left out, every other row is used
    assert len(data.labels) == raw["Malicious"] + raw["Benign"]
    assert data.label_counts() == {"benign": raw["Benign"], "malicious": raw["Malicious"]}
    assert set(data.family[data.labels == 1]) == {"RemcosRAT"}
    assert set(data.family[data.labels == 0]) == {"benign"}
    capture = data.captures[0]
    assert capture.flows == sum(raw.values())
    assert capture.name == "zeek-labeled/conn.log.labeled"


def test_dataset_fingerprint_follows_the_files(tmp_path: Path) -> None:
    path = shared(*SME)
    copy = tmp_path / "conn.log.labeled"
    copy.write_bytes(path.read_bytes())
    before = load_labelled([tmp_path]).fingerprint()
    assert load_labelled([tmp_path]).fingerprint() == before
    lines = copy.read_bytes().splitlines(keepends=True)
    copy.write_bytes(b"".join(lines[:-3]))  # three flows fewer
    assert load_labelled([tmp_path]).fingerprint() != before


# -- features -------------------------------------------------------------------------


def test_feature_schema_hash_is_stable_and_covers_vocabularies() -> None:
    assert len(features.FEATURE_SCHEMA_HASH) == 64
    assert features._schema_hash() == features.FEATURE_SCHEMA_HASH
    assert len(set(features.FEATURE_NAMES)) == len(features.FEATURES)
    for index in features.CATEGORICAL:
        assert features.FEATURES[index].categories


def test_features_do_not_depend_on_row_order() -> None:
    """Context is per window, not per batch position: shuffled rows give the same rows."""
    events = load_events(shared(*SME)).stream("zeek.connection")
    matrix = features.extract(events)
    order = np.random.default_rng(0).permutation(events.num_rows)
    shuffled = features.extract(events.take(pa.array(order)))
    # equal up to the last bit of a float sum taken in another order
    np.testing.assert_allclose(shuffled, matrix[order], rtol=1e-12, atol=0)


def test_beacon_context_of_remcos_flows() -> None:
    """The RemcosRAT C2 attempts: many failed connections to one peer at steady intervals."""
    events = load_events(shared(*SME)).stream("zeek.connection")
    matrix = features.extract(events)
    column = {name: matrix[:, i] for i, name in enumerate(features.FEATURE_NAMES)}
    c2 = np.asarray(
        events.column("destination.ip").to_numpy(zero_copy_only=False) == "66.63.168.35"
    )
    rej = features.STATES.index("REJ")
    assert (column["state"][c2] == rej).mean() > 0.9
    assert np.all(column["dst_peers"][c2] == 1)
    assert np.all(column["pair_failed"][c2] > 0.9)
    pairs = Counter(
        zip(
            events.column("source.ip").to_pylist(),
            events.column("destination.ip").to_pylist(),
            strict=True,
        )
    )
    assert column["pair_flows"][c2].max() == pairs[("192.168.1.107", "66.63.168.35")]


def test_missing_columns_and_rows_give_nan_not_errors() -> None:
    table = pa.table({"@timestamp": pa.array([0, 1_000_000], pa.timestamp("us", tz="UTC"))})
    matrix = features.extract(table)
    assert matrix.shape == (2, len(features.FEATURES))
    assert np.isnan(matrix[:, features.FEATURE_NAMES.index("duration")]).all()
    assert features.extract(table.slice(0, 0)).shape == (0, len(features.FEATURES))


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("state", float(features.STATES.index("REJ")), "connection state REJ"),
        ("pair_failed", 0.98, "98% of the pair's connections failed"),
        ("hist_resp_rst", 1.0, "reset by the responder (r): yes"),
        ("duration", math.nan, "lasted unknown"),
        ("gap_median", 0.532, "repeated every 0.532 s to the same service"),
    ],
)
def test_features_in_words(name: str, value: float, words: str) -> None:
    assert features.describe(features.FEATURE_NAMES.index(name), value) == words
