"""MITRE ATT&CK Enterprise lookups over the vendored, trimmed data.

``data/attack-enterprise-18.1.json.gz`` is trimmed from ``../shared/attack`` (ATT&CK 18.1,
``mitre/cti`` commit ``421deacb``): tactics in kill-chain order and every technique with the
tactics it belongs to, including revoked and deprecated ones so that old ids still resolve.
MITRE's copyright designation and licence travel inside the file (``licence``), as the
ATT&CK terms require.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

_FILE: Final = "attack-enterprise-18.1.json.gz"
VERSION: Final = "18.1"


@dataclass(frozen=True, slots=True)
class Tactic:
    """One ATT&CK tactic (``TA0011`` command-and-control …)."""

    id: str
    shortname: str
    name: str
    order: int  # position in the Enterprise kill chain, 0 = reconnaissance


@dataclass(frozen=True, slots=True)
class Technique:
    """One ATT&CK technique or sub-technique."""

    id: str
    name: str
    tactics: tuple[str, ...]  # tactic shortnames
    deprecated: bool
    revoked: bool
    revoked_by: str | None


@dataclass(frozen=True, slots=True)
class Attack:
    """The vendored ATT&CK tables."""

    tactics: dict[str, Tactic]  # by id
    techniques: dict[str, Technique]  # by id

    def tactic(self, tactic_id: str) -> Tactic | None:
        """The tactic with this id (``TA0011``), if any."""
        return self.tactics.get(tactic_id)

    def technique(self, technique_id: str) -> Technique | None:
        """The technique with this id (``T1071.001``), if any."""
        return self.techniques.get(technique_id)

    def is_valid(self, tactic_id: str, technique_id: str) -> bool:
        """The technique exists, is current, and belongs to the tactic."""
        return not self.problem(tactic_id, technique_id)

    def problem(self, tactic_id: str, technique_id: str) -> str | None:
        """Why a tactic/technique pair is not valid, or ``None`` if it is."""
        tactic = self.tactics.get(tactic_id)
        if tactic is None:
            return f"unknown tactic {tactic_id!r}"
        technique = self.techniques.get(technique_id)
        if technique is None:
            return f"unknown technique {technique_id!r}"
        if technique.revoked:
            return f"technique {technique_id} is revoked (use {technique.revoked_by})"
        if technique.deprecated:
            return f"technique {technique_id} is deprecated"
        if tactic.shortname not in technique.tactics:
            return (
                f"technique {technique_id} ({technique.name}) does not belong to tactic "
                f"{tactic_id} ({tactic.name}); it belongs to {', '.join(technique.tactics)}"
            )
        return None

    def stage(self, tactic_ids: list[str]) -> Tactic | None:
        """The furthest kill-chain stage among ``tactic_ids`` (unknown ids ignored)."""
        known = [t for i in tactic_ids if (t := self.tactics.get(i)) is not None]
        return max(known, key=lambda t: t.order) if known else None


@cache
def load_attack() -> Attack:
    """Load the vendored ATT&CK data (once per process)."""
    raw = resources.files("correlator.data").joinpath(_FILE).read_bytes()
    data = json.loads(gzip.decompress(raw))
    tactics = {
        t["id"]: Tactic(t["id"], t["shortname"], t["name"], order)
        for order, t in enumerate(data["tactics"])
    }
    techniques = {
        t["id"]: Technique(
            id=t["id"],
            name=t["name"],
            tactics=tuple(t["tactics"]),
            deprecated=bool(t["deprecated"]),
            revoked=bool(t["revoked"]),
            revoked_by=t.get("revoked_by"),
        )
        for t in data["techniques"]
    }
    return Attack(tactics, techniques)
