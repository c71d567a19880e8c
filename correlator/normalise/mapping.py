"""Mapping tables: which source field becomes which ECS field, kept as data.

``mappings/zeek.toml`` and ``mappings/suricata.toml`` hold one table per Zeek log type or
Suricata event type. A field maps to one or more targets, each optionally through a named
transform (``normalise.transforms``); fields a table does not name are kept under the
dataset's namespace (``zeek.<dataset>.<field>``, ``suricata.eve.<field>``), so nothing a
sensor logs is dropped. ``derive`` entries compute further fields from mapped ones.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from correlator.errors import ConfigError
from correlator.normalise.transforms import TRANSFORMS

_PACKAGE: Final = "correlator.normalise.mappings"


class Target(BaseModel):
    """One destination of a source field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: str
    op: str = "identity"
    table: str | None = None
    key: str | None = None

    @field_validator("op")
    @classmethod
    def _known_op(cls, op: str) -> str:
        if op not in TRANSFORMS:
            raise ValueError(f"unknown transform {op!r}; known: {', '.join(sorted(TRANSFORMS))}")
        return op


class Derived(BaseModel):
    """A field computed from already-mapped fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: str
    op: str
    args: tuple[str, ...]
    table: str | None = None
    key: str | None = None

    @field_validator("op")
    @classmethod
    def _known_op(cls, op: str) -> str:
        return Target._known_op(op)


FieldSpec = str | Target | list[str | Target]


class LogMapping(BaseModel):
    """How one log type (or eve event type) becomes events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    namespace: str = ""
    kind: str = "event"
    category: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    protocol: str | None = None
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    prefixes: dict[str, str] = Field(default_factory=dict)
    derive: tuple[Derived, ...] = ()

    def targets(self, name: str) -> tuple[Target, ...] | None:
        """The targets of source field ``name``, or ``None`` if the table does not name it."""
        spec = self.fields.get(name)
        if spec is None:
            for source, target in self.prefixes.items():
                if name.startswith(source):
                    return (Target(to=target + name[len(source) :]),)
            return None
        items = spec if isinstance(spec, list) else [spec]
        return tuple(Target(to=i) if isinstance(i, str) else i for i in items)

    @property
    def prefix(self) -> str:
        """Namespace for fields the table does not name."""
        return self.namespace or self.dataset


class MappingFile(BaseModel):
    """A whole mapping file: shared defaults, lookup tables and one table per log type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    common: Annotated[dict[str, FieldSpec], Field(alias="_common")] = Field(default_factory=dict)
    tables: Annotated[dict[str, dict[str, str]], Field(alias="_tables")] = Field(
        default_factory=dict
    )
    logs: dict[str, LogMapping] = Field(default_factory=dict)

    def for_log(self, log_type: str) -> LogMapping | None:
        """The mapping of ``log_type`` with the shared fields merged in, if there is one."""
        mapping = self.logs.get(log_type)
        if mapping is None:
            return None
        return mapping.model_copy(update={"fields": {**self.common, **mapping.fields}})

    def generic(self, log_type: str, prefix: str) -> LogMapping:
        """A mapping for a log type without a table: shared fields, the rest namespaced."""
        return LogMapping(dataset=f"{prefix}.{log_type}", fields=dict(self.common))


@cache
def load_mapping(name: str) -> MappingFile:
    """Load and validate ``mappings/<name>.toml`` shipped with the package.

    Raises:
        ConfigError: the file is not valid TOML or does not match the schema; the message
            names the file and the offending table.
    """
    resource = resources.files(_PACKAGE).joinpath(f"{name}.toml")
    where = f"correlator/normalise/mappings/{name}.toml"
    try:
        raw = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: {error}") from error
    common = raw.pop("_common", {})
    tables = raw.pop("_tables", {})
    try:
        return MappingFile.model_validate({"_common": common, "_tables": tables, "logs": raw})
    except ValidationError as error:
        problems = "; ".join(
            f"[{'.'.join(str(p) for p in e['loc'][1:])}] {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"{where}: {problems}") from error


@cache
def load_zeek_types() -> dict[str, dict[str, str]]:
    """Zeek field types per log type, for Zeek JSON logs (which carry no ``#types``)."""
    resource = resources.files(_PACKAGE).joinpath("zeek_types.toml")
    try:
        raw = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"correlator/normalise/mappings/zeek_types.toml: {error}") from error
    return {log: dict(fields) for log, fields in raw.items()}
