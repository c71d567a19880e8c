"""DNS and TLS context of conn flows: what the sensor's ``dns`` and ``ssl`` logs add.

TLS is joined by Zeek uid (``zeek.session_id``): the flow's own handshake, if logged: SNI
sent, handshake completed, session resumed, certificate validation failed, version older
than TLS 1.2. DNS is joined by address: was the flow's destination among the addresses a
DNS answer gave the flow's originator shortly before (from the start of the previous
window up to the flow's start), and how long was the name looked up? Malware that calls
hard-coded addresses connects without a lookup.

**Missing visibility is NaN, never 0.** A sensor that logs no ``ssl`` (or ``dns``) events
cannot say "no TLS" (or "no lookup"), and labelled captures differ in which logs they
have: a 0 there would teach the model which dataset a flow came from.

* **TLS**: every TLS feature describes a logged handshake, so a flow without one, or on
  a sensor without an ``ssl`` log, is NaN in all of them: the two cases cannot be told
  apart, and nothing encodes "no TLS". A field Zeek did not log is NaN too (certificate
  validation needs the certificate; TLS 1.3 hides it). Whether a flow carried TLS at
  all is already Zeek's ``service`` of the conn flow. A ``tls_seen`` flag (0 with an
  ``ssl`` log in the window, NaN without) was tried and dropped: its only information
  beyond ``service`` was the visibility pattern, which separates the captures with
  ``ssl`` logs from those without, and leave-one-capture-out showed the model using it
  that way (docs/model.md).
* **DNS**: the unit of visibility is the originator and the window: it received at
  least one DNS answer carrying an address (``dns.resolved_ip``) in the flow's window or
  the one before. There ``dns_resolved`` is 1 or 0; elsewhere NaN (a host whose resolver
  is outside the sensor's view, an inbound flow from the Internet, a sensor without a
  ``dns`` log). Queries without an answered address (mDNS, LLMNR, NXDOMAIN) do not make
  a host visible: they say nothing about the lookups of its connections.

Pure computation, vectorised: one in-memory DuckDB query over Arrow tables.
"""

from __future__ import annotations

from typing import Final

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.schema.event import TIMESTAMP

#: Stream names of the logs read.
DNS_STREAM: Final = "zeek.dns"
SSL_STREAM: Final = "zeek.ssl"
#: How many windows before the flow's a DNS answer may come from (and make the host
#: visible): a name resolved at 10:59 and connected to at 11:01 is still a lookup.
DNS_LOOKBACK_WINDOWS: Final = 1
#: TLS versions (``tls.version_protocol`` and ``tls.version``) older than TLS 1.2; every
#: SSL version (``ssl 3.0``, ``ssl 2.0``) is old too.
OLD_TLS: Final = ("tls 1.0", "tls 1.1")

#: The ``zeek.dns`` columns kept, in fixed types.
DNS_HELD: Final = pa.schema(
    [
        ("@timestamp", TIMESTAMP),
        ("source.ip", pa.string()),
        ("dns.question.name", pa.string()),
        ("dns.resolved_ip", pa.list_(pa.string())),
    ]
)
#: The ``zeek.ssl`` columns kept, in fixed types.
SSL_HELD: Final = pa.schema(
    [
        ("@timestamp", TIMESTAMP),
        ("zeek.session_id", pa.string()),
        ("tls.client.server_name", pa.string()),
        ("zeek.ssl.validation.status", pa.string()),
        ("tls.version", pa.string()),
        ("tls.version_protocol", pa.string()),
        ("tls.established", pa.bool_()),
        ("tls.resumed", pa.bool_()),
    ]
)

#: Features computed here, in the order ``features.FEATURES`` lists them.
NAMES: Final = (
    "tls_sni", "tls_established", "tls_resumed", "tls_cert_invalid", "tls_old_version",
    "dns_resolved", "dns_name_len",
)  # fmt: skip


def project(events: pa.Table, schema: pa.Schema) -> pa.Table:
    """The columns of ``schema`` from ``events`` in fixed types (absent ones as nulls)."""
    n = events.num_rows
    arrays = [
        pc.cast(events.column(f.name).combine_chunks(), f.type)
        if f.name in events.column_names
        else pa.nulls(n, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def answers(dns: pa.Table) -> pa.Table:
    """The DNS events that answered with at least one address (the only ones used)."""
    projected = project(dns, DNS_HELD)
    count = pc.list_value_length(projected.column("dns.resolved_ip")).fill_null(0)
    return projected.filter(pc.greater(count, 0))


_SQL: Final = """
WITH tls AS (
    SELECT uid, bool_or(sni) AS sni, bool_or(established) AS established,
        bool_or(resumed) AS resumed, max(invalid) AS invalid, max(old) AS old
    FROM ssl WHERE uid <> '' GROUP BY uid
),
dns_hosts AS (SELECT DISTINCT src, win FROM dns),
visible AS (
    SELECT DISTINCT f.idx FROM flows f JOIN dns_hosts h
        ON h.src = f.src AND h.win BETWEEN f.win - {lookback} AND f.win
),
looked_up AS (
    SELECT f.idx, arg_max(d.name_len, d.ts) AS name_len
    FROM flows f JOIN dns d
        ON d.src = f.src AND d.ip = f.dst AND d.ts <= f.ts AND d.win >= f.win - {lookback}
    GROUP BY f.idx
)
SELECT f.idx,
    CASE WHEN t.uid IS NOT NULL THEN t.sni::DOUBLE END AS tls_sni,
    CASE WHEN t.uid IS NOT NULL THEN t.established::DOUBLE END AS tls_established,
    CASE WHEN t.uid IS NOT NULL THEN t.resumed::DOUBLE END AS tls_resumed,
    t.invalid AS tls_cert_invalid,
    t.old AS tls_old_version,
    CASE WHEN v.idx IS NULL THEN NULL WHEN l.idx IS NULL THEN 0.0 ELSE 1.0 END AS dns_resolved,
    l.name_len::DOUBLE AS dns_name_len
FROM flows f
LEFT JOIN tls t ON t.uid = f.uid
LEFT JOIN visible v ON v.idx = f.idx
LEFT JOIN looked_up l ON l.idx = f.idx AND v.idx IS NOT NULL
ORDER BY f.idx
"""


def context_features(
    flows: pa.Table, dns: pa.Table | None, ssl: pa.Table | None, window_us: int
) -> dict[str, npt.NDArray[np.float64]]:
    """The DNS and TLS features of each flow (see the module's docstring for NaN).

    Args:
        flows: ``idx``, ``win``, ``ts`` (µs), ``src``, ``dst`` and ``uid`` per conn flow.
        dns: ``zeek.dns`` events seen around the flows, or ``None`` (no DNS visibility).
        ssl: ``zeek.ssl`` events seen around the flows, or ``None`` (no TLS visibility).
        window_us: window length in microseconds.

    Returns:
        One float64 array per name of ``NAMES``.
    """
    connection = duckdb.connect(config={"threads": 1})
    try:
        connection.register("flows", flows)
        connection.register("dns", _dns_rows(dns, window_us))
        connection.register("ssl", _ssl_rows(ssl))
        result = connection.sql(_SQL.format(lookback=DNS_LOOKBACK_WINDOWS)).to_arrow_table()
    finally:
        connection.close()
    return {
        name: np.asarray(
            pc.cast(result.column(name), pa.float64()).to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
        for name in NAMES
    }


def _micros(table: pa.Table) -> pa.Array:
    stamp = pc.cast(table.column("@timestamp").combine_chunks(), TIMESTAMP)
    return pc.cast(stamp, pa.int64())


def _dns_rows(dns: pa.Table | None, window_us: int) -> pa.Table:
    """One row per answered address: ``src``, ``ip``, ``ts``, ``win``, ``name_len``."""
    held = answers(dns) if dns is not None else DNS_HELD.empty_table()
    held = held.filter(pc.is_valid(held.column("@timestamp")))
    listed = held.column("dns.resolved_ip").combine_chunks()
    parent = pc.list_parent_indices(listed)
    micros = np.asarray(_micros(held).take(parent).to_numpy(zero_copy_only=False), np.int64)
    return pa.table(
        {
            "src": held.column("source.ip").combine_chunks().take(parent).fill_null(""),
            "ip": pc.list_flatten(listed),
            "ts": pa.array(micros),
            "win": pa.array(np.floor_divide(micros, window_us)),
            "name_len": pc.utf8_length(held.column("dns.question.name").combine_chunks()).take(
                parent
            ),
        }
    )


def _ssl_rows(ssl: pa.Table | None) -> pa.Table:
    """One row per ``ssl`` event: its uid and the handshake's properties."""
    held = project(ssl, SSL_HELD) if ssl is not None else SSL_HELD.empty_table()
    status = held.column("zeek.ssl.validation.status").combine_chunks()
    version = pc.utf8_lower(
        pc.binary_join_element_wise(
            held.column("tls.version_protocol").combine_chunks().fill_null(""),
            held.column("tls.version").combine_chunks().fill_null(""),
            " ",
        )
    )
    known = pc.and_(
        pc.is_valid(held.column("tls.version").combine_chunks()),
        pc.is_valid(held.column("tls.version_protocol").combine_chunks()),
    )
    old = pc.or_(
        pc.equal(pc.utf8_lower(held.column("tls.version_protocol").combine_chunks()), "ssl"),
        pc.is_in(version, value_set=pa.array(OLD_TLS)),
    )
    return pa.table(
        {
            "uid": held.column("zeek.session_id").combine_chunks().fill_null(""),
            "sni": pc.greater(
                pc.utf8_length(held.column("tls.client.server_name").combine_chunks()), 0
            ).fill_null(False),
            "established": held.column("tls.established").combine_chunks(),
            "resumed": held.column("tls.resumed").combine_chunks(),
            # validated only when Zeek saw the chain: "ok" → 0, any failure → 1, else unknown
            "invalid": pc.cast(pc.not_equal(status, "ok"), pa.float64()),
            "old": pc.if_else(known, pc.cast(old, pa.float64()), pa.scalar(None, pa.float64())),
        }
    )
