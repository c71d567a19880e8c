"""One batch of one stream as the rules see it: columns, predicate masks, hosts, times.

Everything is computed at most once per batch and shared by every rule that asks: a
predicate is keyed by its value (rules are frozen models), so a thousand rules testing
``network.direction == "outbound"`` cost one comparison. Masks are numpy booleans; every
operation is a vectorised Arrow or numpy kernel over the whole batch.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.fields import COMPUTED
from correlator.engine.spec import AllOf, AnyOf, Condition, Not, Predicate, Range
from correlator.engine.window import micros
from correlator.normalise.addresses import Networks, parse

Mask = npt.NDArray[np.bool_]
Entity = Literal["source", "destination"]

#: Where an end's address lives, in order: Zeek files logs before 5.1 name no connection
#: ends, only the transmitting (server) and receiving (client) hosts; software.log names
#: only the host running the software.
ENTITY_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "source": ("source.ip", "client.ip", "host.ip"),
    "destination": ("destination.ip", "server.ip"),
}
_INSIDE: Final[dict[str, tuple[str, ...]]] = {
    "source": ("internal", "outbound"),
    "destination": ("internal", "inbound"),
}
_KNOWN_DIRECTIONS: Final = ("internal", "outbound", "inbound", "external")


class Batch:
    """Cached, vectorised views of one normalised batch."""

    def __init__(self, stream: str, table: pa.Table, internal: Networks) -> None:
        self.stream = stream
        self.table = table
        self.rows = table.num_rows
        self._internal = internal
        self._columns: dict[str, pa.Array] = {}
        self._masks: dict[object, Mask] = {}
        self._ts: npt.NDArray[np.int64] | None = None

    # -- columns ------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        """The batch has a column ``name`` (or can compute it)."""
        if name in COMPUTED:
            return all(self.has(i) for i in COMPUTED[name].inputs)
        return name in self.table.column_names

    def column(self, name: str) -> pa.Array:
        """Column ``name`` as one array; all null where the batch lacks it."""
        cached = self._columns.get(name)
        if cached is not None:
            return cached
        if name in COMPUTED:
            values = COMPUTED[name].compute(self.column)
        elif name in self.table.column_names:
            values = self.table.column(name).combine_chunks()
        else:
            values = pa.nulls(self.rows, pa.string())
        self._columns[name] = values
        return values

    def text(self, name: str) -> pa.Array:
        """Column ``name`` as text.

        A list column gives its first element (ECS ``host.ip``, for instance, is a list of
        one address).
        """
        key = f"text:{name}"
        cached = self._columns.get(key)
        if cached is not None:
            return cached
        values = self.column(name)
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            values = first_element(values)
        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        self._columns[key] = text
        return text

    def first_of(self, names: tuple[str, ...]) -> pa.Array:
        """Per row, the first non-null of several text columns."""
        present = [self.text(n) for n in names if self.has(n)]
        if not present:
            return pa.nulls(self.rows, pa.string())
        return present[0] if len(present) == 1 else pc.coalesce(*present)

    @property
    def ts(self) -> npt.NDArray[np.int64]:
        """``@timestamp`` in microseconds."""
        if self._ts is None:
            self._ts = micros(self.column("@timestamp"))
        return self._ts

    # -- hosts --------------------------------------------------------------------------

    def host(self, entity: Entity) -> pa.Array:
        """The address of one end of each event."""
        return self.first_of(ENTITY_FIELDS[entity])

    def internal(self, entity: Entity) -> Mask:
        """True where that end of the event is an internal host.

        ``network.direction`` (computed at normalisation from the same networks and Zeek's
        local flags) answers where it is known; the address is tested where it is not.
        """
        key = ("internal", entity)
        cached = self._masks.get(key)
        if cached is not None:
            return cached
        direction = self.text("network.direction")
        known = _mask(pc.is_in(direction, value_set=pa.array(_KNOWN_DIRECTIONS)))
        inside = _mask(pc.is_in(direction, value_set=pa.array(_INSIDE[entity])))
        if not known.all():
            rows = np.flatnonzero(~known)
            addresses = self.host(entity).take(pa.array(rows))
            inside[rows] = self._internal.contains(parse(addresses))
        self._masks[key] = inside
        return inside

    # -- predicates ---------------------------------------------------------------------

    def where(self, predicates: tuple[Predicate, ...]) -> Mask:
        """Rows satisfying every predicate (all rows for none)."""
        mask = np.ones(self.rows, dtype=bool)
        for predicate in predicates:
            mask &= self.mask(predicate)
        return mask

    def mask(self, predicate: Predicate) -> Mask:
        """Rows satisfying one predicate, computed once per batch."""
        cached = self._masks.get(predicate)
        if cached is not None:
            return cached
        if isinstance(predicate, Condition):
            result = np.zeros(self.rows, dtype=bool)
            for name in predicate.fields:
                result |= self._condition(predicate, name)
        elif isinstance(predicate, Not):
            result = ~self.mask(predicate.not_)
        elif isinstance(predicate, AnyOf):
            result = np.zeros(self.rows, dtype=bool)
            for inner in predicate.any:
                result |= self.mask(inner)
        elif isinstance(predicate, AllOf):
            result = self.where(predicate.all)
        else:  # pragma: no cover - the union is closed
            raise TypeError(f"not a predicate: {predicate!r}")
        self._masks[predicate] = result
        return result

    def _condition(self, condition: Condition, name: str) -> Mask:
        if not self.has(name):
            return np.zeros(self.rows, dtype=bool)
        values = self.column(name)
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            if condition.op == "exists":
                lengths = pc.list_value_length(values).fill_null(0)
                return _mask(pc.greater(lengths, 0))
            flat = values.flatten()
            hits = evaluate(condition, flat)
            parents = np.asarray(pc.list_parent_indices(values).to_numpy(), dtype=np.int64)
            out = np.zeros(self.rows, dtype=bool)
            out[parents[hits]] = True
            return out
        return evaluate(condition, values)


def first_element(values: pa.Array) -> pa.Array:
    """The first element of each list (null for a null or empty list)."""
    lengths = np.asarray(pc.list_value_length(values).fill_null(0).to_numpy(), dtype=np.int64)
    offsets = np.asarray(values.offsets.to_numpy(), dtype=np.int64)[:-1]
    flat = values.values
    present = lengths > 0
    picked = (
        flat.take(pa.array(np.where(present, offsets, 0)))
        if len(flat)
        else pa.nulls(len(values), flat.type)
    )
    return pc.if_else(pa.array(present), picked, pa.nulls(len(values), flat.type))


def evaluate(condition: Condition, values: pa.Array) -> Mask:
    """A condition over one flat column (nulls never match, except through ``not``)."""
    op = condition.op
    if op == "exists":
        valid = pc.is_valid(values)
        if pa.types.is_string(values.type):
            valid = pc.and_(valid, pc.greater(pc.utf8_length(values), 0))
        return _mask(valid)
    if op == "range":
        assert isinstance(condition.value, Range)  # noqa: S101 - checked by the model
        return _range(values, condition.value)
    if op == "cidr":
        cidrs = [str(v) for v in condition.values]
        return Networks.of(cidrs).contains(parse(pc.cast(values, pa.string())))
    if op in ("regex", "contains"):
        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        out = np.zeros(len(values), dtype=bool)
        for pattern in condition.values:
            kernel = pc.match_substring_regex if op == "regex" else pc.match_substring
            out |= _mask(kernel(text, str(pattern), ignore_case=condition.ignore_case))
        return out
    return _equal(values, condition.values, ignore_case=condition.ignore_case)


def _equal(values: pa.Array, wanted: tuple[object, ...], *, ignore_case: bool) -> Mask:
    if pa.types.is_string(values.type) or pa.types.is_null(values.type):
        text = pc.cast(values, pa.string())
        keys = [str(v).lower() if isinstance(v, bool) else str(v) for v in wanted]
        if ignore_case:
            text, keys = pc.utf8_lower(text), [k.lower() for k in keys]
        return _mask(pc.is_in(text, value_set=pa.array(keys, pa.string())))
    if pa.types.is_boolean(values.type):
        flags = [v for v in wanted if isinstance(v, bool)]
        return _mask(pc.is_in(values, value_set=pa.array(flags, pa.bool_())))
    numbers = [n for v in wanted if (n := _number(v)) is not None]
    as_float = pc.cast(values, pa.float64())
    return _mask(pc.is_in(as_float, value_set=pa.array(numbers, pa.float64())))


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _range(values: pa.Array, bounds: Range) -> Mask:
    if pa.types.is_timestamp(values.type) or pa.types.is_duration(values.type):
        values = pc.cast(values, pa.int64())
    numbers = pc.cast(values, pa.float64())
    result = pc.is_valid(numbers)
    for bound, kernel in (
        (bounds.gt, pc.greater),
        (bounds.gte, pc.greater_equal),
        (bounds.lt, pc.less),
        (bounds.lte, pc.less_equal),
    ):
        if bound is not None:
            result = pc.and_(result, kernel(numbers, bound))
    return _mask(result)


def _mask(values: pa.Array | pa.ChunkedArray) -> Mask:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def check_regex(pattern: str) -> str | None:
    """Why Arrow's RE2 engine refuses ``pattern``, or ``None`` if it accepts it."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except pa.ArrowInvalid as error:
        return str(error)
    return None
