"""Sensor verdicts as findings: Suricata alerts and Zeek notices, weighted by data.

The weights live in ``data/signals.toml``: a score per Suricata alert category (falling back
to the alert's severity) and per Zeek notice type. Each alert or notice becomes a finding on
every internal host it concerns (see ``engine.attribution``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from correlator.engine.allowlist import Allowlist
from correlator.engine.attribution import attribute
from correlator.engine.base import Stateless, build_findings, empty_findings
from correlator.engine.batch import Batch
from correlator.errors import ConfigError
from correlator.normalise.addresses import Networks

_WHERE: Final = "correlator/data/signals.toml"


class SuricataWeights(BaseModel):
    """Scores for Suricata alerts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: dict[int, float]
    victim_is_source: tuple[str, ...] = ()
    category: dict[str, float] = Field(default_factory=dict)
    # alert category → ATT&CK tactic id, where the signature's metadata names none
    tactic: dict[str, str] = Field(default_factory=dict)


class NoticeWeights(BaseModel):
    """Scores for Zeek notices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: float = Field(ge=0, le=100)
    notes: dict[str, float] = Field(default_factory=dict)


class SignalWeights(BaseModel):
    """The whole ``signals.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suricata: SuricataWeights
    zeek_notice: NoticeWeights


def load_weights() -> SignalWeights:
    """Load and validate ``data/signals.toml``.

    Raises:
        ConfigError: the file is malformed or a score lies outside 0–100.
    """
    text = resources.files("correlator.data").joinpath("signals.toml").read_text("utf-8")
    try:
        weights = SignalWeights.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValidationError) as error:
        raise ConfigError(f"{_WHERE}: {error}") from error
    scores = [
        *weights.suricata.severity.values(),
        *weights.suricata.category.values(),
        *weights.zeek_notice.notes.values(),
    ]
    if any(not 0 <= s <= 100 for s in scores):  # noqa: PLR2004 - the score range
        raise ConfigError(f"{_WHERE}: every score must lie in 0–100")
    return weights


@dataclass(frozen=True, slots=True)
class SuricataAlerts(Stateless):
    """Suricata ``alert`` events as findings."""

    weights: SuricataWeights
    internal: Networks
    inbound_factor: float
    allowlist: Allowlist | None = None

    @property
    def ruleset(self) -> str:
        """Rule family name."""
        return "suricata"

    @property
    def streams(self) -> frozenset[str]:
        """Streams read."""
        return frozenset({"suricata.eve.alert"})

    def observe(self, stream: str, events: pa.Table) -> pa.Table:
        """One finding per alert and internal host concerned."""
        if not events.num_rows or "rule.name" not in events.column_names:
            return empty_findings()
        signature = events.column("rule.name").combine_chunks()
        category = _strings(events, "rule.category")
        scores = _lookup(category, self.weights.category)
        by_severity = _lookup(
            pc.cast(_strings(events, "event.severity"), pa.string()),
            {str(k): v for k, v in self.weights.severity.items()},
        )
        scores = np.where(np.isnan(scores), by_severity, scores)
        scores = np.nan_to_num(scores, nan=self.weights.severity.get(3, 15.0))
        reverse = _matches(signature, self.weights.victim_is_source)
        attributed = attribute(
            events, scores, reverse, internal=self.internal, inbound_factor=self.inbound_factor
        )
        rule_ids = _strings(events, "rule.id")
        return build_findings(
            events,
            attributed,
            rule_id=rule_ids,
            rule_name=signature,
            rule_category=category,
            ruleset=self.ruleset,
            techniques=_lists(events, "threat.technique.id"),
            tactics=_tactics(events, category, self.weights.tactic),
            allowlisted=_allowlisted(self.allowlist, stream, events, rule_ids, self.internal),
        )


@dataclass(frozen=True, slots=True)
class ZeekNotices(Stateless):
    """Zeek ``notice.log`` entries as findings."""

    weights: NoticeWeights
    internal: Networks
    inbound_factor: float
    allowlist: Allowlist | None = None

    @property
    def ruleset(self) -> str:
        """Rule family name."""
        return "zeek-notice"

    @property
    def streams(self) -> frozenset[str]:
        """Streams read."""
        return frozenset({"zeek.notice"})

    def observe(self, stream: str, events: pa.Table) -> pa.Table:
        """One finding per notice and internal host concerned."""
        if not events.num_rows or "rule.name" not in events.column_names:
            return empty_findings()
        note = events.column("rule.name").combine_chunks()
        scores = np.nan_to_num(_lookup(note, self.weights.notes), nan=self.weights.default)
        attributed = attribute(
            events,
            scores,
            np.zeros(events.num_rows, dtype=bool),
            internal=self.internal,
            inbound_factor=self.inbound_factor,
        )
        return build_findings(
            events,
            attributed,
            rule_id=note,
            rule_name=note,
            rule_category=None,
            ruleset=self.ruleset,
            message=_strings(events, "rule.description"),
            allowlisted=_allowlisted(self.allowlist, stream, events, note, self.internal),
        )


def _allowlisted(
    allowlist: Allowlist | None,
    stream: str,
    events: pa.Table,
    rule_ids: pa.Array,
    internal: Networks,
) -> pa.Array | None:
    """Per event, the allowlist entry it matches (signature, address, domain, JA3)."""
    if not allowlist:
        return None
    return allowlist.label(Batch(stream, events, internal), rule_ids)


def _lists(events: pa.Table, name: str) -> pa.Array | None:
    """A list-of-text column, if the events have it (ET's ATT&CK metadata on alerts)."""
    if name not in events.column_names:
        return None
    values = events.column(name).combine_chunks()
    if pa.types.is_list(values.type):
        return pc.cast(values, pa.list_(pa.string()))
    text = pc.cast(values, pa.string())
    return pc.split_pattern(text, ",")


def _tactics(events: pa.Table, category: pa.Array, table: Mapping[str, str]) -> pa.Array:
    """ATT&CK tactics of each alert: its own metadata, else its category's (signals.toml)."""
    own = _lists(events, "threat.tactic.id")
    keys = pa.array(list(table), pa.string())
    index = pc.index_in(pc.cast(category, pa.string()), value_set=keys)
    by_category = pa.array(list(table.values()), pa.string()).take(index)
    mapped = pc.if_else(
        pc.is_valid(by_category),
        pa.ListArray.from_arrays(
            pa.array(np.arange(len(category) + 1, dtype=np.int32)), pc.fill_null(by_category, "")
        ),
        pa.nulls(len(category), pa.list_(pa.string())),
    )
    if own is None:
        return mapped
    has_own = pc.greater(pc.fill_null(pc.list_value_length(own), 0), 0)
    return pc.if_else(has_own, own, mapped)


def _strings(events: pa.Table, name: str) -> pa.Array:
    if name not in events.column_names:
        return pa.nulls(events.num_rows, pa.string())
    return pc.cast(events.column(name).combine_chunks(), pa.string())


def _lookup(keys: pa.Array, table: Mapping[str, float]) -> npt.NDArray[np.float64]:
    """Score per key from a table; NaN where the key is not listed."""
    value_set = pa.array(list(table.keys()), pa.string())
    scores = np.append(np.array(list(table.values()), dtype=np.float64), np.nan)
    index = pc.index_in(pc.cast(keys, pa.string()), value_set=value_set)
    picked: npt.NDArray[np.float64] = scores[
        index.fill_null(len(table)).to_numpy(zero_copy_only=False)
    ]
    return picked


def _matches(text: pa.Array, patterns: tuple[str, ...]) -> npt.NDArray[np.bool_]:
    if not patterns:
        return np.zeros(len(text), dtype=bool)
    joined = "|".join(f"(?:{p})" for p in patterns)
    re.compile(joined)  # fail here, with Python's message, on a bad pattern
    hits = pc.match_substring_regex(text, joined).fill_null(False)
    return np.asarray(hits.to_numpy(zero_copy_only=False), dtype=bool)
