"""A loaded rule: its parsed file, typed params, content hash and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from correlator.engine.spec import RuleFile

if TYPE_CHECKING:
    from correlator.engine.kinds.base import KindParams


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule file, validated.

    Attributes:
        path: the file.
        spec: the whole file as typed data.
        params: ``rule.params`` validated by the kind's params model.
        sha256: hash of the file's content (``version.lock.json`` records it).
        lines: line of each key path, for messages that point into the file.
    """

    path: Path
    spec: RuleFile
    params: KindParams
    sha256: str
    lines: dict[tuple[str | int, ...], int]

    @property
    def id(self) -> str:
        """The rule's UUID."""
        return self.spec.metadata.rule_id

    @property
    def name(self) -> str:
        """The rule's name."""
        return self.spec.rule.name

    @property
    def version(self) -> int:
        """The rule's version."""
        return self.spec.metadata.version

    @property
    def kind(self) -> str:
        """The rule's kind."""
        return self.spec.rule.kind

    @property
    def techniques(self) -> list[str]:
        """ATT&CK technique ids, in file order, without repeats."""
        return list(dict.fromkeys(a.technique for a in self.spec.rule.attack))

    @property
    def tactics(self) -> list[str]:
        """ATT&CK tactic ids, in file order, without repeats."""
        return list(dict.fromkeys(a.tactic for a in self.spec.rule.attack))

    def where(self, *location: str | int) -> str:
        """``path:line`` of a key path (the file's first line if unknown)."""
        path = tuple(location)
        while path and path not in self.lines:
            path = path[:-1]
        return f"{self.path}:{self.lines.get(path, 1)}"
