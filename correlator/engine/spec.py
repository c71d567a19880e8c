"""The rule file schema: ``[metadata]``, ``[rule]``, ``[rule.params]``, ``[[rule.attack]]``.

Every model is frozen and forbids unknown keys, so a typo in a rule is an error with its
location, never a silently ignored setting. ``rule.params`` is validated by the params model
of the rule's kind (``engine/kinds``); the predicates of ``where`` are defined here because
every kind shares them.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FROZEN: Final = ConfigDict(frozen=True, extra="forbid")

Severity = Literal["low", "medium", "high", "critical"]
Maturity = Literal["experimental", "production", "deprecated"]

#: Risk score bands per severity (Elastic's detection-rule bands, as incidents use them).
RISK_BANDS: Final[dict[str, tuple[int, int]]] = {
    "low": (0, 21),
    "medium": (22, 47),
    "high": (48, 73),
    "critical": (74, 100),
}
_TACTIC: Final = re.compile(r"^TA\d{4}$")
_TECHNIQUE: Final = re.compile(r"^T\d{4}(\.\d{3})?$")

Scalar = str | int | float | bool


class Range(BaseModel):
    """Bounds of a ``range`` predicate; at least one is given."""

    model_config = FROZEN

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Self:
        if self.gt is None and self.gte is None and self.lt is None and self.lte is None:
            raise ValueError("a range needs at least one of gt, gte, lt, lte")
        return self


Op = Literal["eq", "in", "cidr", "regex", "contains", "range", "exists"]


class Condition(BaseModel):
    """One field predicate: ``{ field = "url.domain", op = "regex", value = '^[0-9.]+$' }``.

    ``field`` may name several fields: the condition holds if it holds for any of them
    (for example every file-name field of several streams). A list-valued field holds if
    any element does. A missing field is null, and null satisfies only ``not exists``.
    Regular expressions use RE2 syntax (Arrow's engine): no look-around, no back-references.
    """

    model_config = FROZEN

    field: str | tuple[str, ...]
    op: Op
    value: Scalar | tuple[Scalar, ...] | Range | None = None
    ignore_case: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names, as a tuple."""
        return (self.field,) if isinstance(self.field, str) else self.field

    @model_validator(mode="after")
    def _value_fits_op(self) -> Self:
        value = self.value
        if self.op == "exists":
            if value is not None:
                raise ValueError("op 'exists' takes no value (wrap it in not = {...} to negate)")
        elif self.op == "range":
            if not isinstance(value, Range):
                raise ValueError("op 'range' needs value = { gte = …, lt = … }")
        elif self.op in ("in", "cidr", "contains") and (isinstance(value, Range) or value is None):
            raise ValueError(f"op {self.op!r} needs a value or a list of values")
        elif self.op in ("eq", "regex") and (isinstance(value, Range | tuple) or value is None):
            raise ValueError(f"op {self.op!r} needs one value")
        if self.op in ("regex", "cidr", "contains") and not all(
            isinstance(v, str) for v in self.values
        ):
            raise ValueError(f"op {self.op!r} compares text: give strings")
        return self

    @property
    def values(self) -> tuple[Scalar, ...]:
        """The value(s) as a tuple (empty for ``exists`` and ``range``)."""
        if self.value is None or isinstance(self.value, Range):
            return ()
        return self.value if isinstance(self.value, tuple) else (self.value,)


class Not(BaseModel):
    """Negation: ``{ not = { field = …, op = … } }``."""

    model_config = FROZEN

    not_: Predicate = Field(alias="not")


class AnyOf(BaseModel):
    """Disjunction: ``{ any = [ {…}, {…} ] }``."""

    model_config = FROZEN

    any: tuple[Predicate, ...] = Field(min_length=1)


class AllOf(BaseModel):
    """Conjunction (the default of a ``where`` list): ``{ all = [ {…}, {…} ] }``."""

    model_config = FROZEN

    all: tuple[Predicate, ...] = Field(min_length=1)


Predicate = Condition | Not | AnyOf | AllOf
Not.model_rebuild()
AnyOf.model_rebuild()
AllOf.model_rebuild()


def predicate_fields(predicates: tuple[Predicate, ...]) -> list[str]:
    """Every field named by some predicates, in order of appearance."""
    out: list[str] = []
    for predicate in predicates:
        if isinstance(predicate, Condition):
            out.extend(predicate.fields)
        elif isinstance(predicate, Not):
            out.extend(predicate_fields((predicate.not_,)))
        elif isinstance(predicate, AnyOf):
            out.extend(predicate_fields(predicate.any))
        else:
            out.extend(predicate_fields(predicate.all))
    return out


class Deprecation(BaseModel):
    """Why and when a rule was deprecated."""

    model_config = FROZEN

    date: date
    reason: str = Field(min_length=1)


class Metadata(BaseModel):
    """``[metadata]``: identity and life cycle."""

    model_config = FROZEN

    rule_id: str
    version: int = Field(ge=1)
    maturity: Maturity
    created: date
    updated: date
    deprecation: Deprecation | None = None

    @field_validator("rule_id")
    @classmethod
    def _uuid4(cls, value: str) -> str:
        try:
            parsed = uuid.UUID(value)
        except ValueError as error:
            raise ValueError(f"{value!r} is not a UUID") from error
        if parsed.version != 4 or str(parsed) != value:  # noqa: PLR2004 - UUID version 4
            raise ValueError(f"{value!r} must be a lower-case UUIDv4 (uuid.uuid4())")
        return value

    @model_validator(mode="after")
    def _dates(self) -> Self:
        if self.updated < self.created:
            raise ValueError("updated is before created")
        return self


class AttackRef(BaseModel):
    """One ``[[rule.attack]]`` entry: a tactic and a technique of it."""

    model_config = FROZEN

    tactic: Annotated[str, Field(pattern=_TACTIC.pattern)]
    technique: Annotated[str, Field(pattern=_TECHNIQUE.pattern)]


class RuleBody(BaseModel):
    """``[rule]``: what the rule says and how it is evaluated."""

    model_config = FROZEN

    name: str = Field(min_length=3, max_length=120)
    description: str = Field(min_length=10)
    severity: Severity
    risk_score: int = Field(ge=0, le=100)
    # how often a hit is a true positive, 0–1: scales the rule's weight in scoring
    confidence: float = Field(default=1.0, gt=0, le=1)
    data_sources: tuple[str, ...] = Field(min_length=1)
    false_positives: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    kind: str
    # finding text, with {placeholders} of the kind's statistics and the group's fields
    message: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    attack: tuple[AttackRef, ...] = Field(min_length=1)


class RuleFile(BaseModel):
    """A whole rule file."""

    model_config = FROZEN

    metadata: Metadata
    rule: RuleBody
