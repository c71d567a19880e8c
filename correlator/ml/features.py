"""What the flow classifier sees: one vectorised definition for training and inference.

Each Zeek ``conn`` event becomes one row of ``FEATURES``: what the flow itself shows
(duration, bytes and packets each way and their ratios, state, history flags, transport,
service, destination port class, direction) and its context in the same epoch-aligned
window of ``WINDOW_SECONDS``: how often the pair talked, to how many ports, how many of
those attempts failed, how many peers the originator reached, and how regular the
repetitions to one service were (beacons repeat at steady intervals with steady sizes).
Given the sensor's ``zeek.dns`` and ``zeek.ssl`` events, it also gets their context
(``dns_tls``): the flow's TLS handshake, joined by uid, and whether its destination was
looked up in DNS by its originator beforehand; NaN wherever those logs do not say.

Raw port numbers, addresses and times are deliberately not features: a tree learns
``port == 5888`` from one capture and nothing that carries to the next. Port numbers enter
only as a small fixed vocabulary of well-known services plus three range classes.

``FEATURE_SCHEMA_HASH`` is a sha256 over the names, types, vocabularies and parameters
below; a bundle trained on another definition is refused (``bundle.ModelBundle.load``).
Pure computation: no I/O (the context is an in-memory DuckDB query over Arrow).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Final, Literal

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.ml import dns_tls

#: Length of the context window. An hour holds enough repetitions of a beacon that calls
#: home every few minutes to measure its regularity, and is short enough that a site's
#: hour of conn events fits in memory while the detector waits for the window to close.
WINDOW_SECONDS: Final = 3600
#: Connection states where no exchange of data was established: a failed attempt.
FAILED_STATES: Final = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR")
#: A repetition interval counts as regular within this fraction of the median interval.
REGULAR_TOLERANCE: Final = 0.1

STATES: Final = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH",
                 "SHR", "OTH")  # fmt: skip
TRANSPORTS: Final = ("tcp", "udp", "icmp")
#: Zeek service names (first of a comma-separated list); ``none``: no analyzer matched.
SERVICES: Final = ("none", "dns", "http", "ssl", "ssh", "dhcp", "ntp", "smtp", "ftp", "irc",
                   "krb", "smb", "rdp", "sip", "snmp", "quic", "other")  # fmt: skip
#: Destination ports named one by one; all others fall into three range classes.
PORTS: Final = (21, 22, 23, 25, 53, 67, 80, 123, 137, 443, 445, 1900, 3389, 5353, 5355, 8080)
PORT_CLASSES: Final = (*(str(p) for p in PORTS), "other-system", "registered", "dynamic")
DIRECTIONS: Final = ("outbound", "inbound", "internal", "external")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature: its name, type and how to say a value of it in words.

    Attributes:
        name: column name in the feature matrix.
        kind: ``numeric`` or ``category`` (an index into ``categories``).
        phrase: the feature in words, with ``{v}`` for the value (formatted by ``fmt``,
            or the category's name).
        fmt: how a numeric value is shown: ``count``, ``share``, ``seconds``, ``bytes``,
            ``ratio`` or ``flag``.
        categories: the vocabulary of a categorical feature.
        context: computed over the flow's window rather than from the flow alone.
    """

    name: str
    kind: Literal["numeric", "category"]
    phrase: str
    fmt: str = "count"
    categories: tuple[str, ...] = ()
    context: bool = False


def _flag(name: str, phrase: str) -> FeatureSpec:
    return FeatureSpec(name, "numeric", phrase, "flag")


def _ctx(name: str, phrase: str, fmt: str = "count") -> FeatureSpec:
    return FeatureSpec(name, "numeric", phrase, fmt, context=True)


FEATURES: Final[tuple[FeatureSpec, ...]] = (
    FeatureSpec("duration", "numeric", "lasted {v}", "seconds"),
    FeatureSpec("orig_bytes", "numeric", "{v} of payload sent by the originator", "bytes"),
    FeatureSpec("resp_bytes", "numeric", "{v} of payload answered", "bytes"),
    FeatureSpec("orig_pkts", "numeric", "{v} packets sent"),
    FeatureSpec("resp_pkts", "numeric", "{v} packets answered"),
    FeatureSpec("orig_pkt_size", "numeric", "{v} per packet sent", "bytes"),
    FeatureSpec("resp_pkt_size", "numeric", "{v} per packet answered", "bytes"),
    FeatureSpec("orig_share", "numeric", "{v} of the payload sent by the originator", "share"),
    FeatureSpec("state", "category", "connection state {v}", categories=STATES),
    FeatureSpec("transport", "category", "{v} transport", categories=TRANSPORTS),
    FeatureSpec("service", "category", "application protocol {v}", categories=SERVICES),
    FeatureSpec("port_class", "category", "destination port {v}", categories=PORT_CLASSES),
    FeatureSpec("direction", "category", "{v} connection", categories=DIRECTIONS),
    _flag("hist_handshake", "SYN answered by the responder (h): {v}"),
    _flag("hist_orig_fin", "closed by the originator with FIN (F): {v}"),
    _flag("hist_orig_rst", "reset by the originator (R): {v}"),
    _flag("hist_resp_rst", "reset by the responder (r): {v}"),
    _flag("hist_retransmit", "retransmissions (T/t): {v}"),
    _flag("hist_flipped", "direction flipped by Zeek (^): {v}"),
    FeatureSpec("history_len", "numeric", "{v} history events"),
    _ctx("pair_flows", "{v} connections between the pair in the hour"),
    _ctx("pair_ports", "{v} distinct ports used on the peer in the hour"),
    _ctx("pair_failed", "{v} of the pair's connections failed", "share"),
    _ctx("pair_bytes_cv", "payload size varied by {v} across the pair's connections", "share"),
    _ctx("src_flows", "{v} connections by the originator in the hour"),
    _ctx("src_peers", "{v} distinct peers of the originator in the hour"),
    _ctx("src_ports", "{v} distinct destination ports of the originator in the hour"),
    _ctx("src_failed", "{v} of the originator's connections failed", "share"),
    _ctx("dst_peers", "{v} distinct hosts reached this destination in the hour"),
    _ctx("gap_median", "repeated every {v} to the same service", "seconds"),
    _ctx("gap_cv", "repetition interval varied by {v}", "share"),
    _ctx("gap_regular", "{v} of repetitions within 10 % of the usual interval", "share"),
    # DNS and TLS context (dns_tls): NaN where the sensor's dns/ssl logs are not visible
    _ctx("tls_sni", "server name (SNI) sent: {v}", "flag"),
    _ctx("tls_established", "TLS handshake completed: {v}", "flag"),
    _ctx("tls_resumed", "TLS session resumed: {v}", "flag"),
    _ctx("tls_cert_invalid", "server certificate failed validation: {v}", "flag"),
    _ctx("tls_old_version", "TLS older than 1.2: {v}", "flag"),
    _ctx("dns_resolved", "destination looked up in DNS by the originator first: {v}", "flag"),
    _ctx("dns_name_len", "{v} characters in the name looked up"),
)

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES)
#: Column indices of the categorical features (for HistGradientBoosting).
CATEGORICAL: Final[tuple[int, ...]] = tuple(
    i for i, f in enumerate(FEATURES) if f.kind == "category"
)


#: Columns of ``zeek.dns`` and ``zeek.ssl`` events the DNS and TLS features read.
DNS_COLUMNS: Final = tuple(dns_tls.DNS_HELD.names)
SSL_COLUMNS: Final = tuple(dns_tls.SSL_HELD.names)


def _schema_hash() -> str:
    material = {
        "features": [[f.name, f.kind, list(f.categories), f.context] for f in FEATURES],
        "window_seconds": WINDOW_SECONDS,
        "failed_states": list(FAILED_STATES),
        "regular_tolerance": REGULAR_TOLERANCE,
        "ports": list(PORTS),
        "dns_lookback_windows": dns_tls.DNS_LOOKBACK_WINDOWS,
        "old_tls": list(dns_tls.OLD_TLS),
        "dns_columns": DNS_COLUMNS,
        "ssl_columns": SSL_COLUMNS,
        # how missing visibility is decided (dns_tls): changing it changes what NaN means
        "visibility": {
            "tls": "ssl event in the window",
            "dns": "answer to the originator with an address in the window or the lookback",
        },
        "dtype": "float64",
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


#: Identity of this feature definition; stored in every bundle's manifest.
FEATURE_SCHEMA_HASH: Final = _schema_hash()

#: Columns of ``zeek.connection`` events the features read.
INPUT_COLUMNS: Final = (
    "@timestamp", "source.ip", "destination.ip", "destination.port", "network.transport",
    "network.protocol", "network.direction", "event.duration", "zeek.connection.orig_bytes",
    "zeek.connection.resp_bytes", "source.packets", "destination.packets", "source.bytes",
    "destination.bytes", "zeek.connection.state", "zeek.connection.history", "zeek.session_id",
)  # fmt: skip


def extract(
    events: pa.Table, *, dns: pa.Table | None = None, ssl: pa.Table | None = None
) -> npt.NDArray[np.float64]:
    """The feature matrix of ``zeek.connection`` events, one row per event.

    Missing values are NaN (HistGradientBoosting routes them on their own branch).
    Context features count the flows of the same table only: give the whole window, and
    the DNS answers of the window before it too.

    Args:
        events: normalised ``zeek.connection`` events (missing columns count as unset).
        dns: the sensor's ``zeek.dns`` events around them; ``None``: no DNS log (NaN).
        ssl: the sensor's ``zeek.ssl`` events around them; ``None``: no TLS log (NaN).

    Returns:
        A ``(rows, len(FEATURES))`` float64 matrix in ``FEATURE_NAMES`` order.
    """
    n = events.num_rows
    out = np.full((n, len(FEATURES)), np.nan, dtype=np.float64)
    if not n:
        return out
    columns = _flow_features(events)
    columns.update(_context_features(events))
    columns.update(_dns_tls_features(events, dns, ssl))
    for index, spec in enumerate(FEATURES):
        out[:, index] = columns[spec.name]
    return out


def window_of(events: pa.Table) -> npt.NDArray[np.int64]:
    """The context window number (epoch seconds // ``WINDOW_SECONDS``) of each event."""
    micros = _timestamps_us(events)
    return np.floor_divide(micros, WINDOW_SECONDS * 1_000_000)


def _flow_features(events: pa.Table) -> dict[str, npt.NDArray[np.float64]]:
    orig_bytes = _number(events, "zeek.connection.orig_bytes")
    resp_bytes = _number(events, "zeek.connection.resp_bytes")
    orig_pkts = _number(events, "source.packets")
    resp_pkts = _number(events, "destination.packets")
    with np.errstate(divide="ignore", invalid="ignore"):
        orig_size = _number(events, "source.bytes") / orig_pkts
        resp_size = _number(events, "destination.bytes") / resp_pkts
        share = orig_bytes / (orig_bytes + resp_bytes)
    history = _strings(events, "zeek.connection.history")
    transport = _strings(events, "network.transport")
    service = pc.list_element(pc.split_pattern(_strings(events, "network.protocol"), ","), 0)
    return {
        "duration": _number(events, "event.duration") / 1e9,
        "orig_bytes": orig_bytes,
        "resp_bytes": resp_bytes,
        "orig_pkts": orig_pkts,
        "resp_pkts": resp_pkts,
        "orig_pkt_size": _finite(orig_size),
        "resp_pkt_size": _finite(resp_size),
        "orig_share": _finite(share),
        "state": _codes(_strings(events, "zeek.connection.state"), STATES),
        "transport": _codes(pc.utf8_lower(transport), TRANSPORTS),
        "service": _codes(pc.utf8_lower(service).fill_null("none"), SERVICES, other="other"),
        "port_class": _port_classes(events, transport),
        "direction": _codes(_strings(events, "network.direction"), DIRECTIONS),
        "hist_handshake": _contains(history, ("h",)),
        "hist_orig_fin": _contains(history, ("F",)),
        "hist_orig_rst": _contains(history, ("R",)),
        "hist_resp_rst": _contains(history, ("r",)),
        "hist_retransmit": _contains(history, ("T", "t")),
        "hist_flipped": _contains(history, ("^",)),
        "history_len": _number_of(pc.utf8_length(history)),
    }


_CONTEXT_SQL: Final = """
WITH gaps AS (
    SELECT idx, win, src, dst, dport, proto,
        ts - lag(ts) OVER (PARTITION BY win, src, dst, dport, proto ORDER BY ts, idx) AS gap
    FROM flows
),
service AS (
    SELECT win, src, dst, dport, proto,
        median(gap) AS gap_median,
        stddev_pop(gap) / nullif(avg(gap), 0) AS gap_cv,
        count(gap) AS gaps
    FROM gaps GROUP BY ALL
),
regular AS (
    SELECT g.win, g.src, g.dst, g.dport, g.proto,
        avg(CASE WHEN abs(g.gap - s.gap_median) <= {tolerance} * s.gap_median
            THEN 1.0 ELSE 0.0 END) AS gap_regular
    FROM gaps g JOIN service s USING (win, src, dst, dport, proto)
    WHERE g.gap IS NOT NULL GROUP BY ALL
),
pair AS (
    SELECT win, src, dst, count(*) AS pair_flows, count(DISTINCT dport) AS pair_ports,
        avg(failed) AS pair_failed,
        stddev_pop(obytes) / nullif(avg(obytes), 0) AS pair_bytes_cv
    FROM flows GROUP BY ALL
),
origin AS (
    SELECT win, src, count(*) AS src_flows, count(DISTINCT dst) AS src_peers,
        count(DISTINCT dport) AS src_ports, avg(failed) AS src_failed
    FROM flows GROUP BY ALL
),
target AS (SELECT win, dst, count(DISTINCT src) AS dst_peers FROM flows GROUP BY ALL)
SELECT f.idx, pair_flows, pair_ports, pair_failed, pair_bytes_cv, src_flows, src_peers,
    src_ports, src_failed, dst_peers,
    CASE WHEN s.gaps >= 2 THEN s.gap_median END AS gap_median,
    CASE WHEN s.gaps >= 2 THEN s.gap_cv END AS gap_cv,
    CASE WHEN s.gaps >= 2 THEN r.gap_regular END AS gap_regular
FROM flows f
JOIN pair USING (win, src, dst)
JOIN origin USING (win, src)
JOIN target USING (win, dst)
JOIN service s USING (win, src, dst, dport, proto)
LEFT JOIN regular r USING (win, src, dst, dport, proto)
ORDER BY f.idx
"""


def _context_features(events: pa.Table) -> dict[str, npt.NDArray[np.float64]]:
    n = events.num_rows
    micros = _timestamps_us(events)
    state = _strings(events, "zeek.connection.state")
    failed = pc.is_in(state, value_set=pa.array(FAILED_STATES)).fill_null(False)
    flows = pa.table(
        {
            "idx": pa.array(np.arange(n, dtype=np.int64)),
            "win": pa.array(np.floor_divide(micros, WINDOW_SECONDS * 1_000_000)),
            "ts": pa.array(micros / 1e6),
            # unset addresses and ports group together as ""/-1 (SQL NULLs would not join)
            "src": _strings(events, "source.ip").fill_null(""),
            "dst": _strings(events, "destination.ip").fill_null(""),
            "dport": pc.cast(_column(events, "destination.port", pa.int64()), pa.int64()).fill_null(
                -1
            ),
            "proto": _strings(events, "network.transport").fill_null(""),
            "failed": pc.cast(failed, pa.float64()),
            "obytes": pa.array(_number(events, "zeek.connection.orig_bytes")),
        }
    )
    # one thread: aggregates of floats then sum in one order, so features are reproducible
    connection = duckdb.connect(config={"threads": 1})
    try:
        connection.register("flows", flows)
        sql = _CONTEXT_SQL.format(tolerance=REGULAR_TOLERANCE)
        result = connection.sql(sql).to_arrow_table()
    finally:
        connection.close()
    return {name: _number_of(result.column(name)) for name in result.column_names if name != "idx"}


def _dns_tls_features(
    events: pa.Table, dns: pa.Table | None, ssl: pa.Table | None
) -> dict[str, npt.NDArray[np.float64]]:
    micros = _timestamps_us(events)
    window_us = WINDOW_SECONDS * 1_000_000
    flows = pa.table(
        {
            "idx": pa.array(np.arange(events.num_rows, dtype=np.int64)),
            "win": pa.array(np.floor_divide(micros, window_us)),
            "ts": pa.array(micros),
            "src": _strings(events, "source.ip").fill_null(""),
            "dst": _strings(events, "destination.ip").fill_null(""),
            "uid": _strings(events, "zeek.session_id").fill_null(""),
        }
    )
    return dns_tls.context_features(flows, dns, ssl, window_us)


def _timestamps_us(events: pa.Table) -> npt.NDArray[np.int64]:
    stamp = _column(events, "@timestamp", pa.timestamp("us", tz="UTC"))
    values = pc.cast(pc.cast(stamp, pa.timestamp("us", tz="UTC")), pa.int64()).fill_null(0)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)


def _column(events: pa.Table, name: str, dtype: pa.DataType) -> pa.Array:
    if name not in events.column_names:
        return pa.nulls(events.num_rows, dtype)
    return events.column(name).combine_chunks()


def _strings(events: pa.Table, name: str) -> pa.Array:
    return pc.cast(_column(events, name, pa.string()), pa.string())


def _number(events: pa.Table, name: str) -> npt.NDArray[np.float64]:
    return _number_of(_column(events, name, pa.float64()))


def _number_of(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.float64]:
    cast = pc.cast(values, pa.float64())
    return np.asarray(cast.to_numpy(zero_copy_only=False), dtype=np.float64)


def _finite(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.where(np.isfinite(values), values, np.nan)


def _codes(
    values: pa.Array, vocabulary: tuple[str, ...], *, other: str | None = None
) -> npt.NDArray[np.float64]:
    """Index of each value in ``vocabulary``; NaN when unset (or unknown, without ``other``)."""
    index = pc.index_in(values, value_set=pa.array(vocabulary))
    codes = _number_of(index)
    if other is not None:
        codes = np.where(np.isnan(codes) & _valid(values), vocabulary.index(other), codes)
    return codes


def _valid(values: pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=bool)


def _contains(history: pa.Array, letters: tuple[str, ...]) -> npt.NDArray[np.float64]:
    found = np.zeros(len(history), dtype=np.float64)
    for letter in letters:  # one vectorised pass per letter (at most two), not per flow
        hit = pc.match_substring(history, letter).fill_null(False)
        found = np.maximum(found, np.asarray(hit.to_numpy(zero_copy_only=False), dtype=float))
    return np.where(_valid(history), found, np.nan)


def _port_classes(events: pa.Table, transport: pa.Array) -> npt.NDArray[np.float64]:
    ports = _number(events, "destination.port")
    named = np.asarray(PORTS, dtype=np.float64)
    position = np.searchsorted(named, ports)
    exact = (position < len(named)) & (named[np.minimum(position, len(named) - 1)] == ports)
    base = len(PORTS)
    ranged = np.select(
        [ports < 1024, ports < 49152],  # noqa: PLR2004 - IANA system and registered ranges
        [base, base + 1],
        default=base + 2,
    ).astype(np.float64)
    classes = np.where(exact, position.astype(np.float64), ranged)
    icmp = np.asarray(pc.equal(transport, "icmp").fill_null(False).to_numpy(False), dtype=bool)
    return np.where(np.isnan(ports) | icmp, np.nan, classes)


def describe(index: int, value: float) -> str:
    """A feature value in words: ``connection state REJ``, ``45 connections …``."""
    spec = FEATURES[index]
    if math.isnan(value):
        return spec.phrase.format(v="unknown")
    if spec.kind == "category":
        return spec.phrase.format(v=spec.categories[int(value)])
    if spec.fmt == "flag":
        return spec.phrase.format(v="yes" if value else "no")
    return spec.phrase.format(v=_format(spec.fmt, value))


def _format(fmt: str, value: float) -> str:
    if fmt == "share":
        return f"{value:.0%}"
    if fmt == "seconds":
        return f"{value:.3g} s"
    if fmt == "bytes":
        return f"{value:,.0f} bytes"
    return f"{value:,.0f}"
