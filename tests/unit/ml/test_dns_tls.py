"""DNS and TLS context features on real excerpts: what they say, and NaN without visibility.

TLS: CTU-Normal-42 (``010``), whose sensor logged ``ssl`` only from 02:15 on. DNS: the
AndroidTester RAT capture (``003``), one answered lookup by the infected phone, then C2
connections to 147.32.83.234:1337 by address (README: the 12 flows on port 1337).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest

from correlator.ml import features
from correlator.ml.dataset import companions_of
from correlator.testing import load_events
from tests.conftest import shared

CTU = "stratosphere-ctu-zeek"
TLS_CAPTURE = (CTU, "010-zeek-mixed", "data")
RAT = (CTU, "003-zeek-scenario-malicious")
RAT_C2 = "147.32.83.234"
LOOKED_UP = "172.217.23.202"  # infinitedata-pa.googleapis.com, answered to 10.8.0.61
SME = ("stratosphere-ctu-sme-11-labelled", "zeek-labeled")


def _column(matrix: npt.NDArray[np.float64], name: str) -> npt.NDArray[np.float64]:
    return matrix[:, features.FEATURE_NAMES.index(name)]


def _strings(table: pa.Table, name: str) -> npt.NDArray[np.str_]:
    return np.asarray(table.column(name).to_pylist(), dtype=object).astype(str)


@pytest.fixture(scope="module")
def tls_capture() -> tuple[pa.Table, pa.Table, npt.NDArray[np.float64]]:
    folder = shared(*TLS_CAPTURE)
    conn = load_events(folder / "conn.log.labeled").stream("zeek.connection")
    ssl = load_events(folder / "ssl.log.labeled").stream("zeek.ssl")
    return conn, ssl, features.extract(conn, ssl=ssl)


def test_a_flow_with_a_tls_record_and_one_without(
    tls_capture: tuple[pa.Table, pa.Table, npt.NDArray[np.float64]],
) -> None:
    conn, ssl, matrix = tls_capture
    with_record = np.isin(_strings(conn, "zeek.session_id"), _strings(ssl, "zeek.session_id"))
    assert with_record.sum() > 1000
    # handshake details exist exactly for the flows with a handshake
    for name in ("tls_sni", "tls_established", "tls_resumed"):
        column = _column(matrix, name)
        assert not np.isnan(column[with_record]).any(), name
        assert np.isnan(column[~with_record]).all(), name
    assert (_column(matrix, "tls_sni")[with_record] == 1).mean() > 0.9
    established = _column(matrix, "tls_established")[with_record]
    assert set(established) == {0.0, 1.0}
    invalid = _column(matrix, "tls_cert_invalid")
    assert set(invalid[~np.isnan(invalid)]) == {0.0, 1.0}  # "ok" and failed validations
    assert np.isnan(invalid[~with_record]).all()
    old = _column(matrix, "tls_old_version")
    assert set(old[~np.isnan(old)]) == {0.0}  # TLS 1.2 only in this capture


def test_no_tls_is_never_a_value(
    tls_capture: tuple[pa.Table, pa.Table, npt.NDArray[np.float64]],
) -> None:
    """No handshake and no ssl log look the same: NaN, so nothing encodes "no TLS"."""
    conn, _, matrix = tls_capture
    tls = [features.FEATURE_NAMES.index(n) for n in features.FEATURE_NAMES if n.startswith("tls")]
    # before 02:15 the sensor logged no ssl at all: those flows are unknown too
    without_log = features.extract(conn)
    assert np.isnan(without_log[:, tls]).all()
    assert np.isnan(matrix[:, tls]).any(axis=1).sum() > conn.num_rows / 2
    # the flow-only and window features do not depend on the ssl log
    others = [i for i in range(len(features.FEATURES)) if i not in tls]
    np.testing.assert_array_equal(without_log[:, others], matrix[:, others])


@pytest.fixture(scope="module")
def rat() -> tuple[pa.Table, pa.Table, npt.NDArray[np.float64]]:
    folder = shared(*RAT)
    conn = load_events(folder / "conn.log").stream("zeek.connection")
    dns = load_events(folder / "dns.log").stream("zeek.dns")
    return conn, dns, features.extract(conn, dns=dns)


def test_a_looked_up_destination_and_one_called_by_address(
    rat: tuple[pa.Table, pa.Table, npt.NDArray[np.float64]],
) -> None:
    conn, _, matrix = rat
    resolved = _column(matrix, "dns_resolved")
    dst = _strings(conn, "destination.ip")
    looked_up = (dst == LOOKED_UP) & ~np.isnan(resolved)
    assert looked_up.sum() > 10
    assert np.all(resolved[looked_up] == 1)
    name = "infinitedata-pa.googleapis.com"
    assert np.all(_column(matrix, "dns_name_len")[looked_up] == len(name))
    # the RAT's C2 by address, while the phone's lookups are visible: a known "no"
    c2 = (dst == RAT_C2) & ~np.isnan(resolved)
    assert c2.sum() >= 5
    assert np.all(resolved[c2] == 0)
    assert np.isnan(_column(matrix, "dns_name_len")[resolved == 0]).all()


def test_no_dns_visibility_is_nan(
    rat: tuple[pa.Table, pa.Table, npt.NDArray[np.float64]],
) -> None:
    conn, dns, matrix = rat
    resolved = _column(matrix, "dns_resolved")
    src = _strings(conn, "source.ip")
    # hosts that received no answer at all (the gateway, Google's inbound push)
    assert np.isnan(resolved[src != "10.8.0.61"]).all()
    # the phone, in hours more than one window after its one answered lookup
    windows = features.window_of(conn)
    lookup = int(features.window_of(dns).max())
    late = (src == "10.8.0.61") & (windows > lookup + 1)
    assert late.sum() > 10
    # (a connection to the address looked up two windows earlier included)
    assert np.isnan(resolved[late]).all()
    assert ((_strings(conn, "destination.ip") == LOOKED_UP) & late).any()
    # and no dns log at all
    assert np.isnan(_column(features.extract(conn), "dns_resolved")).all()


def test_unanswered_queries_give_no_dns_visibility() -> None:
    """CTU-SME-11's dns log holds only LLMNR/mDNS queries: nothing about its connections."""
    folder = shared(*SME)
    conn = load_events(folder / "conn.log.labeled").stream("zeek.connection")
    dns = load_events(folder / "dns.log.labeled").stream("zeek.dns")
    assert dns.num_rows
    matrix = features.extract(conn, dns=dns)
    assert np.isnan(_column(matrix, "dns_resolved")).all()


def test_training_reads_the_logs_beside_a_conn_log(tmp_path: Path) -> None:
    folder = shared(*TLS_CAPTURE)
    found = companions_of(folder / "conn.log.labeled")
    assert found.ssl is not None
    assert found.ssl.num_rows == 1039
    assert found.dns is not None
    assert found.dns.num_rows == 8
    assert [name for name, _ in found.files] == ["dns.log.labeled", "ssl.log.labeled"]
    alone = tmp_path / "conn.log.labeled"
    alone.write_bytes((folder / "conn.log.labeled").read_bytes())
    nothing = companions_of(alone)
    assert nothing.dns is None
    assert nothing.ssl is None
    assert not nothing.files


def test_feature_rows_do_not_depend_on_context_row_order(
    tls_capture: tuple[pa.Table, pa.Table, npt.NDArray[np.float64]],
) -> None:
    conn, ssl, matrix = tls_capture
    order = np.random.default_rng(0).permutation(ssl.num_rows)
    shuffled = features.extract(conn, ssl=ssl.take(pa.array(order)))
    np.testing.assert_allclose(shuffled, matrix, rtol=1e-12, atol=0)
