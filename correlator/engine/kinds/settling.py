"""When an ``absence`` verdict can be taken, and what it is: pure functions over tables.

``kinds/absence.py`` keeps the state: judged events waiting for their verdict, their join
keys (one row per clause and key, tied to the event by its serial number) and the
companions seen (``companions.py``). A verdict is taken once every clause's stream has
moved far enough past the event (``ripe_before``, ``ripe_mask``); an event counts when no
``unless`` clause and every ``requires`` clause finds a companion (``verdicts``); a group
counts its earliest events only (``earliest``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.kinds.absence_params import AbsenceParams
from correlator.engine.kinds.companions import has_companion
from correlator.engine.rule import Rule
from correlator.engine.window import MICROS, group_starts, rank_in_group


def ripe_before(
    rules: Iterable[Rule], marks: Mapping[str, int], *, settle_us: int, lateness_us: int
) -> dict[str, int]:
    """Per rule, the time up to which every clause's stream has moved far enough on.

    A clause's stream has, for an event at ``t``, once its newest event is past
    ``t + after + settle``, or once the judged stream itself is ``lateness`` past ``t``
    (a companion stream that is silent or far behind must not hold verdicts, and state,
    without end). Rules whose judged stream has no event yet are left out.
    """
    out: dict[str, int] = {}
    for rule in rules:
        params = rule.params
        assert isinstance(params, AbsenceParams)  # noqa: S101
        own = marks.get(params.stream)
        if own is None:
            continue
        silent = own - lateness_us  # a companion stream this far behind is not waited for
        out[rule.id] = min(
            max(silent, marks[c.stream] - c.after * MICROS - settle_us)
            if c.stream in marks
            else silent
            for c in params.clauses
        )
    return out


def ripe_mask(judged: pa.Table, bounds: Mapping[str, int]) -> npt.NDArray[np.bool_]:
    """Which judged events are at or before their rule's bound (one comparison each)."""
    ids = pa.array(list(bounds), pa.string())
    bound = np.array([*bounds.values(), np.iinfo(np.int64).min], dtype=np.int64)
    index = pc.index_in(judged.column("rule_id"), value_set=ids)
    limit = bound[np.asarray(index.fill_null(len(ids)).to_numpy(zero_copy_only=False))]
    ts = np.asarray(judged.column("ts").to_numpy(), dtype=np.int64)
    ripe: npt.NDArray[np.bool_] = ts <= limit
    return ripe


def verdicts(
    judged: pa.Table, keys: pa.Table, companions: pa.Table, rules: Mapping[str, Rule]
) -> npt.NDArray[np.bool_]:
    """For judged events, whether each counts: no ``unless``, every ``requires``.

    One ``has_companion`` lookup per rule and clause, over the keys of the events asked
    about and the clause's companions.
    """
    serials = judged.column("serial").combine_chunks()
    ok = np.ones(judged.num_rows, dtype=bool)
    keys = keys.filter(pc.is_in(keys.column("serial"), value_set=serials))
    for rule_id in pc.unique(judged.column("rule_id")).to_pylist():
        params = rules[rule_id].params
        assert isinstance(params, AbsenceParams)  # noqa: S101
        rule_mask = pc.equal(judged.column("rule_id"), rule_id)
        of_rule = np.asarray(rule_mask.to_numpy(zero_copy_only=False), dtype=bool)
        # keys carry no rule: a key is the rule's if its event is
        own = pc.is_in(keys.column("serial"), value_set=serials.filter(rule_mask.combine_chunks()))
        for index, clause in enumerate(params.clauses):
            mine = keys.filter(pc.and_(own, pc.equal(keys.column("clause"), index)))
            near = companions.filter(
                pc.and_(
                    pc.equal(companions.column("rule_id"), rule_id),
                    pc.equal(companions.column("clause"), index),
                )
            )
            matched = has_companion(
                mine.column("key").combine_chunks(),
                np.asarray(mine.column("ts").to_numpy(), dtype=np.int64),
                near.column("key").combine_chunks(),
                np.asarray(near.column("ts").to_numpy(), dtype=np.int64),
                before_us=clause.before * MICROS,
                after_us=clause.after * MICROS,
            )
            found = mine.column("serial").combine_chunks().filter(pa.array(matched))
            with_one = np.asarray(
                pc.is_in(serials, value_set=found).to_numpy(zero_copy_only=False), dtype=bool
            )
            if index < len(params.unless):
                ok &= ~(of_rule & with_one)
            else:
                ok &= ~of_rule | with_one
    return ok


def earliest(judged: pa.Table, cap: int, *, ordered: bool = False) -> pa.Table:
    """The earliest ``cap`` rows of each group (``gid``), by time, then id.

    ``ordered`` sorts the result by group, time and id; otherwise a table where no group
    exceeds the cap is returned as it is.
    """
    if not judged.num_rows:
        return judged
    code = pc.dictionary_encode(judged.column("gid").combine_chunks()).indices
    if not ordered and np.bincount(np.asarray(code, dtype=np.int64)).max() <= cap:
        return judged
    order = pc.sort_indices(
        pa.table({"g": code, "ts": judged.column("ts"), "id": judged.column("id")}),
        sort_keys=[("g", "ascending"), ("ts", "ascending"), ("id", "ascending")],
    )
    judged = judged.take(order)
    rank = rank_in_group(group_starts(code.take(order)))
    return judged.filter(pa.array(rank < cap))
