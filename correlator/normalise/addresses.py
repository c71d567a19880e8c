"""IP address columns: parsing to packed bytes and network membership, vectorised.

IPv4 text is parsed with Arrow string kernels and numpy, never row by row. IPv6 (rare in
most captures) goes through :mod:`ipaddress` once per distinct address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_IPV4: Final = r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$"
_OCTET_MAX: Final = 255
_IPV6_BYTES: Final = 16


@dataclass(frozen=True, slots=True)
class Addresses:
    """Parsed addresses of one column.

    Attributes:
        packed: 16 bytes a row; IPv4 fills the first 4.
        v6: true for IPv6 rows.
        ok: true where the text was a valid address.
    """

    packed: npt.NDArray[np.uint8]
    v6: npt.NDArray[np.bool_]
    ok: npt.NDArray[np.bool_]

    def v4_int(self) -> npt.NDArray[np.uint32]:
        """IPv4 rows as big-endian integers (meaningless for other rows)."""
        return np.ascontiguousarray(self.packed[:, :4]).view(">u4").reshape(-1).astype(np.uint32)

    def v6_halves(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """IPv6 rows as two big-endian 64-bit halves."""
        halves = np.ascontiguousarray(self.packed).view(">u8").reshape(-1, 2).astype(np.uint64)
        return halves[:, 0], halves[:, 1]


def parse(addrs: pa.Array | pa.ChunkedArray) -> Addresses:
    """Parse a text column of IPv4/IPv6 addresses (zone ids such as ``%eth0`` dropped)."""
    if isinstance(addrs, pa.ChunkedArray):
        addrs = addrs.combine_chunks()
    n = len(addrs)
    packed = np.zeros((n, 16), dtype=np.uint8)
    v6 = np.zeros(n, dtype=bool)
    ok = np.zeros(n, dtype=bool)
    if not n:
        return Addresses(packed, v6, ok)
    text = pc.cast(addrs, pa.string())
    is_v4 = pc.match_substring_regex(text, _IPV4).fill_null(False).to_numpy(zero_copy_only=False)
    rows4 = np.flatnonzero(is_v4)
    if len(rows4):
        octets = pc.split_pattern(text.take(pa.array(rows4)), ".").flatten()
        values = pc.cast(octets, pa.int32()).to_numpy().reshape(-1, 4)
        valid = (values <= _OCTET_MAX).all(axis=1)
        packed[rows4, :4] = values.astype(np.uint8)
        ok[rows4] = valid
    other = ~is_v4 & pc.is_valid(text).to_numpy(zero_copy_only=False)
    rows6 = np.flatnonzero(other)
    if len(rows6):
        encoded = pc.dictionary_encode(text.take(pa.array(rows6)))
        uniques = encoded.dictionary.to_pylist()
        table = np.zeros((len(uniques), 16), dtype=np.uint8)
        good = np.zeros(len(uniques), dtype=bool)
        family6 = np.zeros(len(uniques), dtype=bool)
        for i, value in enumerate(uniques):  # once per distinct non-IPv4 text
            try:
                raw = ipaddress.ip_address(value.split("%", 1)[0]).packed
            except ValueError:
                continue
            table[i, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
            good[i] = True
            family6[i] = len(raw) == _IPV6_BYTES
        index = encoded.indices.to_numpy()
        packed[rows6] = table[index]
        ok[rows6] = good[index]
        v6[rows6] = family6[index]
    return Addresses(packed, v6, ok)


@dataclass(frozen=True, slots=True)
class Networks:
    """A set of CIDR networks, split by family for vectorised membership tests."""

    v4: tuple[tuple[int, int], ...]
    v6: tuple[tuple[int, int, int, int], ...]

    @classmethod
    def of(cls, cidrs: Sequence[str]) -> Networks:
        """Build from CIDR strings such as ``10.0.0.0/8`` or ``fc00::/7``.

        Raises:
            ValueError: a string is not a network.
        """
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int, int, int]] = []
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            if isinstance(net, ipaddress.IPv4Network):
                v4.append((int(net.network_address), int(net.netmask)))
            else:
                address, mask = int(net.network_address), int(net.netmask)
                v6.append((address >> 64, address & (2**64 - 1), mask >> 64, mask & (2**64 - 1)))
        return cls(tuple(v4), tuple(v6))

    def contains(self, addrs: Addresses) -> npt.NDArray[np.bool_]:
        """True for each valid address inside any of the networks."""
        hit = np.zeros(len(addrs.ok), dtype=bool)
        if self.v4:
            ints = addrs.v4_int()
            rows = addrs.ok & ~addrs.v6
            for network, mask in self.v4:
                hit |= rows & ((ints & np.uint32(mask)) == np.uint32(network))
        if self.v6:
            hi, lo = addrs.v6_halves()
            rows = addrs.ok & addrs.v6
            for net_hi, net_lo, mask_hi, mask_lo in self.v6:
                inside = ((hi & np.uint64(mask_hi)) == np.uint64(net_hi)) & (
                    (lo & np.uint64(mask_lo)) == np.uint64(net_lo)
                )
                hit |= rows & inside
        return hit
