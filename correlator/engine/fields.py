"""Which fields each stream's events carry, and the fields the engine computes itself.

The catalogue comes from the mapping tables (``normalise/mappings``): the core columns, every
ECS target a table fills, and the dataset's own ``zeek.<dataset>.*`` names from the Zeek type
table. Suricata events keep whatever eve wrote under ``suricata.eve.*``, so any name there is
accepted. Lints use the catalogue to reject a rule that reads a field no event can have.

Computed fields (``furui.*``) are derived per batch, only when a rule reads them, by
vectorised functions listed in ``COMPUTED``; adding one is a function and one line there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.normalise.mapping import LogMapping, MappingFile, load_mapping, load_zeek_types
from correlator.schema.event import CORE_NAMES

SURICATA_PREFIX: Final = "suricata.eve."

#: Registered domain: the label left of a public suffix. The suffix is the last label, or the
#: last two where the second-level label is one of the generic ones ccTLDs register under
#: (co.uk, com.au …); a full public-suffix list is deliberately not shipped.
_REGISTERED: Final = (
    r"(?P<domain>[^.]+\.(?:(?:co|com|net|org|gov|ac|edu|ne|or|go|mil)\.[a-z]{2}|[^.]+))\.?$"
)
#: The labels left of the registered domain: the lazy prefix leaves the domain exactly as
#: ``_REGISTERED`` finds it (its leftmost match).
_SUBDOMAIN: Final = r"^(?P<sub>.+?)\." + _REGISTERED


@dataclass(frozen=True, slots=True)
class Computed:
    """A field computed from other fields of the same event."""

    inputs: tuple[str, ...]
    compute: Callable[[Callable[[str], pa.Array]], pa.Array]
    description: str


def _registered_domain(column: Callable[[str], pa.Array]) -> pa.Array:
    names = pc.utf8_lower(pc.cast(column("dns.question.name"), pa.string()))
    found = pc.struct_field(pc.extract_regex(names, _REGISTERED), "domain")
    return pc.if_else(pc.is_valid(found), found, names)


def _sld(column: Callable[[str], pa.Array]) -> pa.Array:
    domain = column("furui.dns.registered_domain")  # through the batch's cache
    return pc.struct_field(pc.extract_regex(domain, r"^(?P<label>[^.]*)"), "label")


def _sld_length(column: Callable[[str], pa.Array]) -> pa.Array:
    return pc.cast(pc.utf8_length(column("furui.dns.sld")), pa.int64())


def _sld_entropy(column: Callable[[str], pa.Array]) -> pa.Array:
    return shannon_entropy(column("furui.dns.sld"))


def _subdomain(column: Callable[[str], pa.Array]) -> pa.Array:
    names = pc.utf8_lower(pc.cast(column("dns.question.name"), pa.string()))
    found = pc.struct_field(pc.extract_regex(names, _SUBDOMAIN), "sub")
    # a name that is its registered domain has an empty subdomain; a null name stays null
    return pc.if_else(pc.is_valid(names), pc.fill_null(found, ""), found)


def _subdomain_length(column: Callable[[str], pa.Array]) -> pa.Array:
    return pc.cast(pc.utf8_length(column("furui.dns.subdomain")), pa.int64())


def _subdomain_entropy(column: Callable[[str], pa.Array]) -> pa.Array:
    # the dots between labels are structure, not payload: tunnels encode data in the labels
    return shannon_entropy(pc.replace_substring(column("furui.dns.subdomain"), ".", ""))


def _source_bytes_ratio(column: Callable[[str], pa.Array]) -> pa.Array:
    sent = pc.cast(column("source.bytes"), pa.float64())
    total = pc.add(sent, pc.cast(column("destination.bytes"), pa.float64()))
    # no bytes either way says nothing about direction: null, like a missing field
    return pc.if_else(pc.greater(total, 0), pc.divide(sent, total), pa.scalar(None, pa.float64()))


def shannon_entropy(texts: pa.Array) -> pa.Array:
    """Shannon entropy (bits per byte) of each text, vectorised; null stays null."""
    texts = pc.cast(texts, pa.string())
    n = len(texts)
    if not n:
        return pa.array([], pa.float64())
    valid = np.asarray(pc.is_valid(texts).to_numpy(zero_copy_only=False), dtype=bool)
    filled = pc.fill_null(texts, "")
    buffers = filled.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[filled.offset : filled.offset + n + 1]
    lengths = np.diff(offsets).astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    # count each (text, byte) pair once, then sum -p·log2(p) per text
    codes = np.asarray(data, dtype=np.int64)
    pairs, counts = np.unique(owner * 256 + codes, return_counts=True)
    text_of = pairs // 256
    p = counts / lengths[text_of]
    entropy = np.bincount(text_of, weights=-p * np.log2(p), minlength=n)
    return pa.array(entropy, pa.float64(), mask=~valid)


#: Fields computed by the engine. Names start with ``furui.``.
COMPUTED: Final[dict[str, Computed]] = {
    "furui.dns.registered_domain": Computed(
        ("dns.question.name",),
        _registered_domain,
        "dns.question.name lower-cased and cut to its registered domain (example.co.uk)",
    ),
    "furui.dns.sld": Computed(
        ("furui.dns.registered_domain",),
        _sld,
        "the label of the registered domain left of its suffix",
    ),
    "furui.dns.sld_length": Computed(
        ("furui.dns.sld",), _sld_length, "characters in furui.dns.sld"
    ),
    "furui.dns.sld_entropy": Computed(
        ("furui.dns.sld",), _sld_entropy, "Shannon entropy of furui.dns.sld, bits per byte"
    ),
    "furui.dns.subdomain": Computed(
        ("dns.question.name", "furui.dns.registered_domain"),
        _subdomain,
        "the labels of dns.question.name left of its registered domain (empty if none)",
    ),
    "furui.dns.subdomain_length": Computed(
        ("furui.dns.subdomain",),
        _subdomain_length,
        "characters in furui.dns.subdomain, dots included",
    ),
    "furui.dns.subdomain_entropy": Computed(
        ("furui.dns.subdomain",),
        _subdomain_entropy,
        "Shannon entropy of furui.dns.subdomain without its dots, bits per byte",
    ),
    "furui.network.source_bytes_ratio": Computed(
        ("source.bytes", "destination.bytes"),
        _source_bytes_ratio,
        "share of a connection's bytes sent by its originator, 0–1 (null if none either way)",
    ),
}


def _targets(mapping: LogMapping, name: str) -> list[str]:
    targets = mapping.targets(name)
    if targets is None:
        return [f"{mapping.prefix}.{name}"]
    return [t.to for t in targets]


def _zeek_catalogue(mappings: MappingFile) -> dict[str, frozenset[str]]:
    catalogue: dict[str, frozenset[str]] = {}
    types = load_zeek_types()
    for log_type in sorted(set(types) | set(mappings.logs)):
        mapping = mappings.for_log(log_type) or mappings.generic(log_type, "zeek")
        names: set[str] = set(CORE_NAMES)
        for source in [*types.get(log_type, {}), *mapping.fields]:
            names.update(_targets(mapping, source))
        names.update(d.to for d in mapping.derive)
        catalogue.setdefault(mapping.dataset, frozenset())
        catalogue[mapping.dataset] = catalogue[mapping.dataset] | names
    return catalogue


def _suricata_catalogue(mappings: MappingFile) -> dict[str, frozenset[str]]:
    common: set[str] = set(CORE_NAMES)
    for log_type in mappings.logs:
        mapping = mappings.for_log(log_type)
        if mapping is None:
            continue
        for source in mapping.fields:
            common.update(t for t in _targets(mapping, source) if not t.startswith("suricata."))
        common.update(d.to for d in mapping.derive)
    return {f"{SURICATA_PREFIX}{log_type}": frozenset(common) for log_type in mappings.logs}


@cache
def catalogue() -> dict[str, frozenset[str]]:
    """Known fields per stream (``event.dataset``)."""
    return {
        **_zeek_catalogue(load_mapping("zeek")),
        **_suricata_catalogue(load_mapping("suricata")),
    }


def is_known_stream(stream: str) -> bool:
    """A mapping produces this stream."""
    return stream in catalogue()


def is_known_field(stream: str, name: str) -> bool:
    """Events of ``stream`` can carry field ``name`` (computed fields included)."""
    if name in COMPUTED:
        return all(is_known_field(stream, i) for i in COMPUTED[name].inputs)
    if stream.startswith("suricata.") and name.startswith(SURICATA_PREFIX):
        return True
    return name in catalogue().get(stream, frozenset())
