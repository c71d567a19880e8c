"""Allowlists: known-good addresses, domains, TLS clients and signatures, kept as data.

A TOML file named by ``rules.allowlist`` in the settings holds ``[[entry]]`` tables::

    [[entry]]
    id      = "corp-vuln-scanner"        # shown in incidents; unique
    kind    = "cidr"                     # cidr | domain | ja3 | signature
    value   = "10.20.0.15/32"
    owner   = "secops@example.org"
    reason  = "Nessus scans every night (CHG-1234)"
    expires = 2027-03-31                 # evidence up to the end of this day (UTC)
    rules   = []                         # only these rule ids; empty: every rule

An entry matches evidence, not events: ``cidr`` either end of it, ``domain`` a DNS, HTTP,
TLS or alert domain equal to the value or under it, ``ja3`` the TLS client fingerprint,
``signature`` the rule id (a Suricata signature id, a Zeek notice name or a Furui rule
UUID). Matching findings keep the entry in ``furui.allowlist`` (``id: reason (owner …,
until …)``): scoring leaves them out
and the incident lists them as suppressed, with the entry's owner and reason, so an
allowlist never hides evidence silently. Expiry is judged against the evidence's own time,
so re-running over old logs gives the same result whatever the date.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from correlator.engine.toml_lines import key_lines, line_of
from correlator.errors import ConfigError
from correlator.normalise.addresses import Networks, parse

if TYPE_CHECKING:
    from correlator.engine.batch import Batch, Mask

_FROZEN: Final = ConfigDict(frozen=True, extra="forbid")
#: Event fields holding a domain an entry of kind ``domain`` is compared with.
DOMAIN_FIELDS: Final = (
    "dns.question.name",
    "url.domain",
    "tls.client.server_name",
    "destination.domain",
    "server.domain",
)
JA3_FIELDS: Final = ("tls.client.ja3",)


class AllowlistEntry(BaseModel):
    """One allowlisted thing, with who vouches for it and until when."""

    model_config = _FROZEN

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    kind: Literal["cidr", "domain", "ja3", "signature"]
    value: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    expires: date
    rules: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _value_fits_kind(self) -> Self:
        if self.kind == "cidr":
            Networks.of([self.value])  # raises ValueError with the reason
        return self

    @property
    def until_us(self) -> int:
        """End of the expiry day, in microseconds since the epoch (exclusive)."""
        end = datetime.combine(self.expires + timedelta(days=1), time(), tzinfo=UTC)
        return int(end.timestamp() * 1_000_000)

    def describe(self) -> str:
        """The label findings carry: id, reason, owner and expiry, for the explanation."""
        return f"{self.id}: {self.reason} (owner {self.owner}, until {self.expires})"

    def applies_to(self, rule_id: str) -> bool:
        """The entry covers evidence of this rule."""
        return not self.rules or rule_id in self.rules


class AllowlistFile(BaseModel):
    """A whole allowlist file."""

    model_config = _FROZEN

    entry: tuple[AllowlistEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        ids = [e.id for e in self.entry]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"entry ids used twice: {', '.join(twice)}")
        return self


class Allowlist:
    """Entries ready to label evidence, vectorised per batch."""

    def __init__(self, entries: tuple[AllowlistEntry, ...] = ()) -> None:
        self.entries = entries
        self.by_id = {e.id: e for e in entries}

    def __bool__(self) -> bool:
        return bool(self.entries)

    def label(self, batch: Batch, rule_ids: pa.Array | str) -> pa.Array | None:
        """Per row of ``batch``, the first entry matching it for its rule, or null.

        ``rule_ids`` is the rule of every row (alerts carry theirs) or one rule for all.
        Returns ``None`` when nothing matches, the common case, so callers skip the column.
        """
        if not self.entries or not batch.rows:
            return None
        labels = pa.nulls(batch.rows, pa.string())
        found = False
        for entry in self.entries:
            applies = _applies(entry, rule_ids, batch.rows)
            if not applies.any():
                continue
            hit = applies & self._matches(entry, batch, rule_ids) & (batch.ts < entry.until_us)
            if hit.any():
                found = True
                fresh = pc.and_(pa.array(hit), pc.is_null(labels))
                labels = pc.if_else(fresh, entry.describe(), labels)
        return labels if found else None

    def _matches(self, entry: AllowlistEntry, batch: Batch, rule_ids: pa.Array | str) -> Mask:
        if entry.kind == "signature":
            if isinstance(rule_ids, str):
                return np.full(batch.rows, rule_ids == entry.value)
            equal = pc.equal(pc.cast(rule_ids, pa.string()), entry.value).fill_null(False)
            return np.asarray(equal.to_numpy(zero_copy_only=False), dtype=bool)
        if entry.kind == "cidr":
            networks = Networks.of([entry.value])
            hit = np.zeros(batch.rows, dtype=bool)
            for end in ("source", "destination"):
                hit |= networks.contains(parse(batch.host(end)))
            return hit
        fields = DOMAIN_FIELDS if entry.kind == "domain" else JA3_FIELDS
        hit = np.zeros(batch.rows, dtype=bool)
        wanted = entry.value.lower().rstrip(".")
        for name in fields:
            if not batch.has(name):
                continue
            text = pc.utf8_rtrim(pc.utf8_lower(batch.text(name)), characters=".")
            same = pc.equal(text, wanted)
            if entry.kind == "domain":
                same = pc.or_(same, pc.ends_with(text, "." + wanted))
            hit |= np.asarray(same.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        return hit


def _applies(entry: AllowlistEntry, rule_ids: pa.Array | str, rows: int) -> Mask:
    if not entry.rules:
        return np.ones(rows, dtype=bool)
    if isinstance(rule_ids, str):
        return np.full(rows, rule_ids in entry.rules)
    inside = pc.is_in(pc.cast(rule_ids, pa.string()), value_set=pa.array(entry.rules))
    return np.asarray(inside.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def load_allowlist(path: Path | None) -> Allowlist:
    """Load an allowlist file; ``None`` or an empty path gives an empty allowlist.

    Raises:
        ConfigError: the file is missing or invalid; every problem is reported with its
            ``file:line``.
    """
    if path is None or not str(path):
        return Allowlist()
    if not path.is_file():
        raise ConfigError(f"{path}: no such allowlist file")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"at line (\d+)", str(error))
        where = f"{path}:{found.group(1)}" if found else str(path)
        raise ConfigError(f"{where}: not valid TOML: {error}") from error
    try:
        parsed = AllowlistFile.model_validate(data)
    except ValidationError as error:
        lines = key_lines(text)
        problems = [
            f"{path}:{line_of(lines, e['loc']) or 1}: {'.'.join(str(p) for p in e['loc'])}: "
            f"{e['msg']}"
            for e in error.errors()
        ]
        raise ConfigError("; ".join(problems)) from error
    return Allowlist(parsed.entry)


def expired(allowlist: Allowlist, today: date) -> list[AllowlistEntry]:
    """Entries whose expiry date has passed (for lints and ``furui rules lint``)."""
    return [e for e in allowlist.entries if e.expires < today]
