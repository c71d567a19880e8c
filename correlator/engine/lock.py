"""``version.lock.json``: each rule's name, version and content hash, written by tooling.

A rule whose file changed must carry a higher ``version`` than its lock entry before it
can be locked again (elastic's ``version.lock.json``): released findings name a rule by id
and version, and the same pair must always mean the same logic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from correlator.engine.loader import LOCK_FILE, RuleSet, packaged_rules
from correlator.errors import ConfigError

LOCK_PATH: Final = LOCK_FILE


@dataclass(frozen=True, slots=True)
class LockEntry:
    """What the lock says about one rule."""

    name: str
    version: int
    sha256: str


def lock_path(folder: Path | None = None) -> Path:
    """The lock file of a rule folder (default: the packaged pack)."""
    return (folder or packaged_rules()) / LOCK_FILE


def read_lock(path: Path) -> dict[str, LockEntry]:
    """Read a lock file (an absent file is an empty lock).

    Raises:
        ConfigError: the file is not a valid lock.
    """
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            rule_id: LockEntry(str(e["name"]), int(e["version"]), str(e["sha256"]))
            for rule_id, e in raw.items()
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ConfigError(f"{path}: not a valid rule lock: {error}") from error


def write_lock(ruleset: RuleSet, path: Path) -> list[str]:
    """Record every rule's current version and hash.

    Returns:
        The ids of rules whose entry changed.

    Raises:
        ConfigError: a rule changed but kept the version it was locked at (every such rule
            is named), or the rule set has load errors.
    """
    ruleset.raise_errors()
    old = read_lock(path)
    stale = [
        f"{r.path}: content changed but version {r.version} is already locked; "
        "bump `version` (and `updated`) first"
        for r in ruleset.rules
        if (e := old.get(r.id)) is not None and e.sha256 != r.sha256 and e.version >= r.version
    ]
    if stale:
        raise ConfigError("\n".join(stale))
    new = {
        r.id: {"name": r.name, "version": r.version, "sha256": r.sha256}
        for r in sorted(ruleset.rules, key=lambda r: r.id)
    }
    changed = [i for i, e in new.items() if i not in old or old[i].sha256 != e["sha256"]]
    path.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return changed
