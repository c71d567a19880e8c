"""Elasticsearch mappings derived from Arrow schemas, with core field types only.

The Arrow schema of a stream, of findings or of incidents is the one definition of their
fields; the index mapping follows from it, so what Furui writes always matches what it
declared. Core types only (keyword, text, date, ip, long, double, boolean, object, binary):
the integration-test distribution has no mapper-extras or x-pack field types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import pyarrow as pa

#: Fields holding IP addresses (besides every ``*.ip``); malformed values are not indexed
#: but never make Elasticsearch reject the document.
IP_FIELDS: Final = frozenset({"related.ip", "dns.resolved_ip", "furui.peer_ip", "host.ip"})
#: Free text: searchable words, and a keyword copy for sorting and aggregation.
TEXT_FIELDS: Final = frozenset({"message", "rule.description"})
_KEYWORD: Final = {"type": "keyword", "ignore_above": 8191}


_BY_TYPE: Final[tuple[tuple[Callable[[pa.DataType], bool], dict[str, str]], ...]] = (
    (lambda t: bool(pa.types.is_timestamp(t) or pa.types.is_date(t)), {"type": "date"}),
    (pa.types.is_boolean, {"type": "boolean"}),
    (pa.types.is_integer, {"type": "long"}),
    (pa.types.is_floating, {"type": "double"}),
    (lambda t: bool(pa.types.is_binary(t) or pa.types.is_large_binary(t)), {"type": "binary"}),
)


def field_type(name: str, data_type: pa.DataType) -> dict[str, Any]:
    """The mapping of one field from its dotted name and Arrow type."""
    while pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        data_type = data_type.value_type  # an array of T is mapped as T
    if pa.types.is_struct(data_type):
        children = ((child.name, child.type) for child in data_type)
        return {"properties": properties(children, prefix=f"{name}.")}
    if name in IP_FIELDS or name.endswith(".ip"):
        return {"type": "ip", "ignore_malformed": True}
    for matches, mapping in _BY_TYPE:
        if matches(data_type):
            return dict(mapping)
    if name in TEXT_FIELDS:
        return {"type": "text", "fields": {"keyword": dict(_KEYWORD)}}
    return dict(_KEYWORD)


def properties(fields: Iterable[tuple[str, pa.DataType]], prefix: str = "") -> dict[str, Any]:
    """Nested ``properties`` for ``(dotted name, Arrow type)`` pairs.

    Args:
        fields: names relative to ``prefix`` and their types.
        prefix: the dotted path of the object they are in (decides name-based types such as
            ``*.ip``).
    """
    root: dict[str, Any] = {}
    for name, data_type in fields:
        if pa.types.is_null(data_type):
            continue  # no value seen yet: leave it to a later batch
        parts = name.split(".")
        node = root
        for part in parts[:-1]:
            entry = node.setdefault(part, {"properties": {}})
            node = entry.setdefault("properties", {})
        leaf = field_type(prefix + name, data_type)
        if parts[-1] in node and "properties" in node[parts[-1]] and "properties" in leaf:
            node[parts[-1]]["properties"].update(leaf["properties"])
        else:
            node[parts[-1]] = leaf
    return root


def mapping_for(schema: pa.Schema) -> dict[str, Any]:
    """An index mapping for tables of ``schema`` (flat dotted column names)."""
    return {"properties": properties((f.name, f.type) for f in schema)}
