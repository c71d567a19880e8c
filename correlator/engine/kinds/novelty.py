"""``new`` and ``rare``: terms judged against the history the detector has seen.

``new`` (Elastic's *new terms*): a value of ``fields`` (per ``by`` scope, or for the whole
network) whose first sighting comes at least ``learning`` after the rule's history began.
History begins at the earliest event of the rule's streams that the detector has seen, so
the first ``learning`` of data only teaches.

``rare`` (prevalence): a value of ``fields`` that at most ``max_hosts`` internal hosts have
used, judged once the history spans ``learning``; one finding per host using it.

Both keep, per term, its first sighting (earliest time, then smallest event id) and, for
``rare``, the hosts using it (up to ``max_hosts + 1``: beyond that it is common for good).
Since history start, first sighting and prevalence are minima and set sizes, the verdicts
after all the input do not depend on its order. A verdict that changes with more history
(an earlier sighting arrives, a term becomes common) retracts the finding: it is emitted
again with zero risk, which correlation ignores. Terms are kept up to ``max_groups`` per
kind, the least recently seen dropped first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from correlator.engine.batch import Batch
from correlator.engine.kinds.base import (
    ANY_HOST,
    Context,
    KindParams,
    group_values,
    hits,
    render,
)
from correlator.engine.kinds.groups import GroupState
from correlator.engine.kinds.threshold import CountingKind, base_stats
from correlator.engine.rule import Rule
from correlator.engine.window import MICROS, Duration

#: The host part of a group id, replaced by ``*`` to name the term across hosts.
_HOST_PART = r"^([^\x1e]*\x1e[^\x1e]*\x1e[^\x1e]*\x1e)[^\x1f]*"


class NewParams(KindParams):
    """Params of ``new``."""

    # the term: one value per field
    fields_: tuple[str, ...] = Field(alias="fields", min_length=1)
    # scope of novelty: new for this host (["source.ip"]) or, empty, for the network
    by: tuple[str, ...] = ()
    # history needed before a first sighting counts as new
    learning: Duration

    def fields(self) -> list[str]:
        """Every event field the params read."""
        return [*super().fields(), *self.fields_, *self.by]


class RareParams(KindParams):
    """Params of ``rare``."""

    fields_: tuple[str, ...] = Field(alias="fields", min_length=1)
    # a term used by at most this many internal hosts is rare
    max_hosts: int = Field(default=1, ge=1)
    learning: Duration

    def fields(self) -> list[str]:
        """Every event field the params read."""
        return [*super().fields(), *self.fields_]


class _Novelty(CountingKind):
    """History bookkeeping shared by ``new`` and ``rare``."""

    def __init__(self, rules: Sequence[Rule], context: Context) -> None:
        super().__init__(rules, context)
        self.history: dict[str, int] = {}  # rule id → earliest event time seen (µs)
        self.ready: set[str] = set()  # rules whose history spans their learning period

    def remember(self, batch: Batch, rule: Rule) -> None:
        """Move the rule's history start earlier if this batch begins before it."""
        if not batch.rows:
            return
        earliest = int(batch.ts.min())
        known = self.history.get(rule.id)
        if known is None or earliest < known:
            self.history[rule.id] = earliest
            if known is not None:
                self._touch_rule(rule.id)  # verdicts depend on the history start

    def _touch_rule(self, rule_id: str) -> None:
        groups = self.state.groups
        if not groups.num_rows:
            return
        mine = pc.equal(groups.column("rule_id"), rule_id)
        dirty = pc.or_(groups.column("dirty"), mine)
        index = groups.schema.get_field_index("dirty")
        self.state.groups = groups.set_column(index, "dirty", dirty)

    def learned(self, groups: pa.Table) -> npt.NDArray[np.float64]:
        """Per group: when its rule's learning period ends (µs)."""
        rules = groups.column("rule_id").to_pylist()
        return np.array(
            [
                self.history.get(r, 0) + getattr(self.rules[r].params, "learning", 0) * MICROS
                for r in rules
            ],
            dtype=np.float64,
        )

    def message(self, groups: pa.Table, row: int, stats: Mapping[str, object]) -> str:
        """The finding text of one term."""
        rule = self.rules[groups.column("rule_id")[row].as_py()]
        params = rule.params
        assert isinstance(params, NewParams | RareParams)  # noqa: S101
        scope = params.by if isinstance(params, NewParams) else ()
        values = group_values(rule, groups.column("key")[row].as_py(), [*scope, *params.fields_])
        values.update(stats)
        values.update(
            host=groups.column("host")[row].as_py(),
            peer=groups.column("peer")[row].as_py(),
            role=groups.column("role")[row].as_py(),
        )
        values["term"] = ", ".join(str(values.get(f)) for f in params.fields_)
        return render(rule.spec.rule.message or self.default_message, values)

    def snapshot(self) -> dict[str, pa.Table]:
        """Group state, watermarks and history starts."""
        history = pa.table(
            {
                "rule_id": pa.array(list(self.history), pa.string()),
                "start": pa.array(list(self.history.values()), pa.int64()),
                "ready": pa.array([r in self.ready for r in self.history], pa.bool_()),
            }
        )
        return {**super().snapshot(), f"{self.name}.history": history}

    def restore(self, tables: Mapping[str, pa.Table]) -> None:
        """Take back the state of rules still loaded."""
        super().restore(tables)
        history = tables.get(f"{self.name}.history")
        if history is None:
            return
        for rule_id, start, ready in zip(
            history.column("rule_id").to_pylist(),
            history.column("start").to_pylist(),
            history.column("ready").to_pylist(),
            strict=True,
        ):
            if rule_id in self.rules:
                self.history[rule_id] = start
                if ready:
                    self.ready.add(rule_id)


class NewKind(_Novelty):
    """First sightings of a term after a learning period."""

    name = "new"
    Params = NewParams
    statistics = frozenset({"count", "first", "last", "span", "window", "peer", "term"})
    default_message = "{rule}: first {term} seen at {first}, from {host}"

    @classmethod
    def message_fields(cls, params: KindParams) -> frozenset[str]:
        """Placeholders of a ``new`` message: the term's and scope's fields too."""
        assert isinstance(params, NewParams)  # noqa: S101
        return cls.statistics | {
            "host",
            "allowlist",
            "rule",
            "role",
            "peer",
            *params.fields_,
            *params.by,
        }

    def fold(self, batch: Batch) -> None:
        """Record first sightings per scope and term (one merge for every rule)."""
        parts = []
        for rule in self.rules_on(batch.stream):
            params = rule.params
            assert isinstance(params, NewParams)  # noqa: S101
            self.remember(batch, rule)
            parts.append(
                hits(
                    batch,
                    rule,
                    batch.where(params.where),
                    group_by=[*params.by, *params.fields_],
                    window_seconds=None,
                    context=self.context,
                    per_host=False,
                )
            )
        if parts:
            self.state.add(pa.concat_tables(parts))

    def judge(self, groups: pa.Table) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """New if first seen after the learning period."""
        first = np.asarray(groups.column("first_ts").to_numpy(zero_copy_only=False))
        return first >= self.learned(groups), self.per_rule(groups, "confidence")


class RareKind(_Novelty):
    """Terms few internal hosts use."""

    name = "rare"
    Params = RareParams
    statistics = frozenset(
        {"count", "first", "last", "span", "window", "peer", "term", "hosts", "max_hosts"}
    )
    default_message = "{rule}: {term} used by {hosts} host(s), {host} among them"

    def __init__(self, rules: Sequence[Rule], context: Context) -> None:
        super().__init__(rules, context)
        self.users = GroupState(context.limits, self.watermarks)  # per term: its hosts

    @classmethod
    def message_fields(cls, params: KindParams) -> frozenset[str]:
        """Placeholders of a ``rare`` message: the term's fields too."""
        assert isinstance(params, RareParams)  # noqa: S101
        return cls.statistics | {"host", "allowlist", "rule", "role", "peer", *params.fields_}

    def fold(self, batch: Batch) -> None:
        """Record each host's use of each term, and each term's hosts (one merge each)."""
        mine: list[pa.Table] = []
        shared: list[pa.Table] = []
        for rule in self.rules_on(batch.stream):
            params = rule.params
            assert isinstance(params, RareParams)  # noqa: S101
            self.remember(batch, rule)
            mask = batch.where(params.where)
            for per_host, out in ((True, mine), (False, shared)):
                out.append(
                    hits(
                        batch,
                        rule,
                        mask,
                        group_by=params.fields_,
                        window_seconds=None,
                        context=self.context,
                        per_host=per_host,
                    )
                )
        used = pa.concat_tables(shared) if shared else None
        if used is not None and used.num_rows:
            self.state.add(pa.concat_tables(mine))
            terms = pc.unique(used.column("gid"))
            before = self.users.distinct_counts(terms)
            self.users.add(used, used.column("host").combine_chunks())
            after = self.users.distinct_counts(terms)
            grown = [g for g, n in after.items() if n != before.get(g, 0)]
            if grown:
                self._touch_terms(grown)
        marks = self.watermarks | ({batch.stream: int(batch.ts.max())} if batch.rows else {})
        for rule in self.rules_on(batch.stream):
            learning = rule.params.learning * MICROS  # type: ignore[attr-defined]
            start = self.history.get(rule.id)
            if (
                rule.id not in self.ready
                and start is not None
                and max(marks.values(), default=start) - start >= learning
            ):
                self.ready.add(rule.id)
                self._touch_rule(rule.id)

    def _touch_terms(self, terms: list[str]) -> None:
        """Mark dirty every host's group of terms whose prevalence changed."""
        groups = self.state.groups
        term = pc.replace_substring_regex(groups.column("gid"), _HOST_PART, rf"\1{ANY_HOST}")
        dirty = pc.or_(groups.column("dirty"), pc.is_in(term, value_set=pa.array(terms)))
        index = groups.schema.get_field_index("dirty")
        self.state.groups = groups.set_column(index, "dirty", dirty)

    def _prevalence(self, groups: pa.Table) -> tuple[pa.Array, dict[str, int]]:
        terms = pc.replace_substring_regex(groups.column("gid"), _HOST_PART, rf"\1{ANY_HOST}")
        return terms, self.users.distinct_counts(pc.unique(terms))

    def judge(self, groups: pa.Table) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """Rare if few hosts use the term, once the history spans the learning period."""
        terms, counts = self._prevalence(groups)
        hosts = np.array([counts.get(t, 0) for t in terms.to_pylist()], dtype=np.float64)
        ready = np.array([r in self.ready for r in groups.column("rule_id").to_pylist()])
        ok = ready & (hosts >= 1) & (hosts <= self.per_rule(groups, "max_hosts"))
        return ok, self.per_rule(groups, "confidence")

    def statistics_of(self, groups: pa.Table) -> list[dict[str, object]]:
        """Counts, times and the prevalence of emitted groups."""
        stats = base_stats(groups)
        terms, counts = self._prevalence(groups)
        for item, term, rule_id in zip(
            stats, terms.to_pylist(), groups.column("rule_id").to_pylist(), strict=True
        ):
            params = self.rules[rule_id].params
            assert isinstance(params, RareParams)  # noqa: S101
            item.update(hosts=counts.get(term, 0), max_hosts=params.max_hosts)
        return stats

    def snapshot(self) -> dict[str, pa.Table]:
        """Group state, history and the hosts of each term."""
        users = self.users.snapshot("rare.users")
        return {**super().snapshot(), **users}

    def restore(self, tables: Mapping[str, pa.Table]) -> None:
        """Take back the state of rules still loaded."""
        super().restore(tables)
        self.users.restore(tables, "rare.users", list(self.rules))
