"""Community ID v1 flow hashes (https://github.com/corelight/community-id-spec), vectorised.

The hash input of one flow is at most 40 bytes, so SHA-1 needs a single 64-byte block; the
80 rounds run over whole columns at once in numpy. Tests compare every result with the
reference ``communityid`` package on real flows and on the spec's edge cases (ICMP type
pairing, IPv6, equal addresses).
"""

from __future__ import annotations

import base64
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.normalise.addresses import parse

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_ICMP6: Final = 58
PROTO_SCTP: Final = 132
_PROTOCOLS: Final = 256
_PORT_MAX: Final = 0xFFFF
_PORT_PROTOS: Final = (PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6, PROTO_SCTP)

#: Transport names as Zeek and Suricata write them, lower-cased, to IP protocol numbers.
TRANSPORTS: Final[dict[str, int]] = {
    "tcp": PROTO_TCP,
    "udp": PROTO_UDP,
    "icmp": PROTO_ICMP,
    "ipv6-icmp": PROTO_ICMP6,
    "icmp6": PROTO_ICMP6,
    "icmpv6": PROTO_ICMP6,
    "sctp": PROTO_SCTP,
}

# ICMP request/reply type pairs (Zeek's and the spec's), so both directions share one id.
_ICMP_PAIRS: Final = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS: Final = {
    128: 129,
    129: 128,
    130: 131,
    131: 130,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}

_K: Final = np.array([0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6], dtype=np.uint32)
_H0: Final = np.array([0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0], dtype=np.uint32)


def community_id(
    saddr: pa.Array,
    daddr: pa.Array,
    sport: pa.Array,
    dport: pa.Array,
    transport: pa.Array,
    *,
    seed: int = 0,
) -> pa.Array:
    """Community ID of each flow, or null where the tuple is incomplete or invalid.

    Args:
        saddr: source addresses (text).
        daddr: destination addresses (text).
        sport: source ports (ICMP type for ICMP).
        dport: destination ports (ICMP code for ICMP).
        transport: transport names (``tcp``, ``udp``, ``icmp`` …) or protocol numbers as text.
        seed: the Community ID seed.

    Returns:
        ``1:<base64 sha1>`` strings.
    """
    n = len(saddr)
    source, target = parse(saddr), parse(daddr)
    src, src_v6, src_ok = source.packed, source.v6, source.ok
    dst, dst_v6, dst_ok = target.packed, target.v6, target.ok
    proto = _protocols(transport, src_v6)
    sp = _ports(sport)
    dp = _ports(dport)
    has_ports = (sp >= 0) & (dp >= 0)
    valid = src_ok & dst_ok & (src_v6 == dst_v6) & (proto >= 0)
    valid &= has_ports | ~np.isin(proto, _PORT_PROTOS)
    sp, dp, one_way = _icmp_equivalents(proto, sp, dp, has_ports)
    swap = ~(one_way | _less(src, dst) | (_equal(src, dst) & has_ports & (sp < dp)))
    first = np.where(swap[:, None], dst, src)
    second = np.where(swap[:, None], src, dst)
    p1 = np.where(swap, dp, sp)
    p2 = np.where(swap, sp, dp)
    out = pa.nulls(n, pa.string())
    for v6 in (False, True):
        for ported in (False, True):
            rows = np.flatnonzero(valid & (src_v6 == v6) & (has_ports == ported))
            if not len(rows):
                continue
            addr_len = 16 if v6 else 4
            message = _message(
                seed,
                first=first[rows, :addr_len],
                second=second[rows, :addr_len],
                proto=proto[rows],
                p1=p1[rows],
                p2=p2[rows],
                ported=ported,
            )
            ids = _render(_sha1_one_block(message))
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
            spread = np.zeros(n, dtype=np.int64)
            spread[rows] = np.arange(len(rows))
            out = pc.if_else(pa.array(mask), ids.take(pa.array(spread)) if len(ids) else out, out)
    return out


def _message(
    seed: int,
    *,
    first: npt.NDArray[np.uint8],
    second: npt.NDArray[np.uint8],
    proto: npt.NDArray[np.int64],
    p1: npt.NDArray[np.int64],
    p2: npt.NDArray[np.int64],
    ported: bool,
) -> npt.NDArray[np.uint8]:
    n = len(first)
    parts = [
        np.tile(np.array([seed >> 8, seed & 0xFF], dtype=np.uint8), (n, 1)),
        first,
        second,
        np.stack([proto.astype(np.uint8), np.zeros(n, dtype=np.uint8)], axis=1),
    ]
    if ported:
        parts.append(_be16(p1))
        parts.append(_be16(p2))
    return np.concatenate(parts, axis=1)


def _be16(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    return np.stack([(values >> 8) & 0xFF, values & 0xFF], axis=1).astype(np.uint8)


def _sha1_one_block(message: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """SHA-1 of equal-length messages of at most 55 bytes, one row each."""
    n, length = message.shape
    block = np.zeros((n, 64), dtype=np.uint8)
    block[:, :length] = message
    block[:, length] = 0x80
    block[:, 56:] = np.frombuffer((length * 8).to_bytes(8, "big"), dtype=np.uint8)
    w = np.zeros((80, n), dtype=np.uint32)
    w[:16] = _words(block)
    for t in range(16, 80):
        w[t] = _rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
    a, b, c, d, e = (np.full(n, h, dtype=np.uint32) for h in _H0)
    with np.errstate(over="ignore"):
        for t in range(80):
            stage = t // 20  # SHA-1's four round functions, 20 rounds each
            if stage == 0:
                f = (b & c) | (~b & d)
            elif stage == 2:  # noqa: PLR2004 - the third stage
                f = (b & c) | (b & d) | (c & d)
            else:
                f = b ^ c ^ d
            temp = _rotl(a, 5) + f + e + _K[t // 20] + w[t]
            a, b, c, d, e = temp, a, _rotl(b, 30), c, d
        digest = np.stack([a + _H0[0], b + _H0[1], c + _H0[2], d + _H0[3], e + _H0[4]], axis=1)
    return digest.astype(">u4").view(np.uint8).reshape(n, 20)


def _words(block: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    n = len(block)
    return np.ascontiguousarray(block).view(">u4").reshape(n, 16).astype(np.uint32).T


def _rotl(x: npt.NDArray[np.uint32], bits: int) -> npt.NDArray[np.uint32]:
    return (x << np.uint32(bits)) | (x >> np.uint32(32 - bits))


def _render(digest: npt.NDArray[np.uint8]) -> pa.Array:
    """``1:`` + base64 of each 20-byte digest, encoded as one buffer without a row loop."""
    n = len(digest)
    head = base64.b64encode(np.ascontiguousarray(digest[:, :18]).tobytes())  # 24 chars a row
    tail_bytes = np.zeros((n, 3), dtype=np.uint8)
    tail_bytes[:, :2] = digest[:, 18:]
    tail = base64.b64encode(tail_bytes.tobytes())  # 4 chars a row; the 4th becomes "="
    text = np.empty((n, 30), dtype=np.uint8)
    text[:, 0:2] = np.frombuffer(b"1:", dtype=np.uint8)
    text[:, 2:26] = np.frombuffer(head, dtype=np.uint8).reshape(n, 24)
    text[:, 26:29] = np.frombuffer(tail, dtype=np.uint8).reshape(n, 4)[:, :3]
    text[:, 29] = ord("=")
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(30), n, [None, pa.py_buffer(text)])
    return pc.cast(pc.cast(fixed, pa.binary()), pa.string())


def _protocols(transport: pa.Array, v6: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    encoded = pc.dictionary_encode(pc.utf8_lower(pc.cast(transport, pa.string())))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    numbers = np.array(
        [_protocol(name) for name in encoded.dictionary.to_pylist()] + [-1], dtype=np.int64
    )
    index = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    out = numbers[index]
    # Zeek logs ICMPv6 flows as "icmp": the address family tells them apart
    return np.where((out == PROTO_ICMP) & v6, PROTO_ICMP6, out)


def _protocol(name: str | None) -> int:
    if name is None:
        return -1
    if name.isdigit():
        return int(name) if int(name) < _PROTOCOLS else -1
    return TRANSPORTS.get(name, -1)


def _ports(ports: pa.Array) -> npt.NDArray[np.int64]:
    values = pc.cast(ports, pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)
    return np.where((values >= 0) & (values <= _PORT_MAX), values, -1).astype(np.int64)


def _icmp_equivalents(
    proto: npt.NDArray[np.int64],
    sport: npt.NDArray[np.int64],
    dport: npt.NDArray[np.int64],
    has_ports: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    one_way = np.zeros(len(proto), dtype=bool)
    dport = dport.copy()
    for number, pairs in ((PROTO_ICMP, _ICMP_PAIRS), (PROTO_ICMP6, _ICMP6_PAIRS)):
        mapper = np.full(65536, -1, dtype=np.int64)
        for key, value in pairs.items():
            mapper[key] = value
        rows = (proto == number) & has_ports
        paired = mapper[np.clip(sport, 0, 65535)]
        dport = np.where(rows & (paired >= 0), paired, dport)
        one_way |= rows & (paired < 0)
    return sport, dport, one_way


def _less(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    differs = a != b
    first = np.argmax(differs, axis=1)
    rows = np.arange(len(a))
    less: npt.NDArray[np.bool_] = differs.any(axis=1) & (a[rows, first] < b[rows, first])
    return less


def _equal(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    same: npt.NDArray[np.bool_] = np.all(a == b, axis=1)
    return same
