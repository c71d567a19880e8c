"""Params of the ``absence`` kind: the judged events, and the companion clauses.

``kinds/absence.py`` evaluates them; ``kinds/settling.py`` decides when a verdict can be
taken and what it is.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from correlator.engine.kinds.base import GroupedParams
from correlator.engine.spec import Predicate, predicate_fields
from correlator.engine.window import Duration


class Companion(BaseModel):
    """One clause: which events of which stream, joined on which fields, how near in time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream: str
    where: tuple[Predicate, ...] = ()
    # fields of the judged event …
    on: tuple[str, ...] = Field(min_length=1)
    # … equal, position by position, to these fields of the companion
    by: tuple[str, ...] = Field(min_length=1)
    # how long before and after the judged event a companion may be
    before: Duration = 0
    after: Duration = 0

    @model_validator(mode="after")
    def _same_width(self) -> Self:
        if len(self.on) != len(self.by):
            raise ValueError("`on` and `by` need the same number of fields")
        return self


class AbsenceParams(GroupedParams):
    """Params of ``absence``."""

    # the stream of the judged events (``where`` selects them)
    stream: str
    window: Duration
    min_count: int = Field(default=1, ge=1)
    distinct_field: str | None = None
    min_distinct: int | None = Field(default=None, ge=2)
    # a judged event counts only if none of these has a companion …
    unless: tuple[Companion, ...] = Field(min_length=1)
    # … and each of these has one (for example: the sensor sees this host's lookups)
    requires: tuple[Companion, ...] = ()

    @model_validator(mode="after")
    def _distinct_pair(self) -> Self:
        if (self.distinct_field is None) != (self.min_distinct is None):
            raise ValueError("distinct_field and min_distinct go together")
        return self

    @property
    def clauses(self) -> tuple[Companion, ...]:
        """``unless`` clauses, then ``requires`` clauses (a clause's number is its index)."""
        return (*self.unless, *self.requires)

    def fields(self) -> list[str]:
        """Every event field the params read."""
        out = [*super().fields(), *([self.distinct_field] if self.distinct_field else [])]
        for clause in self.clauses:
            out.extend([*predicate_fields(clause.where), *clause.on, *clause.by])
        return out
