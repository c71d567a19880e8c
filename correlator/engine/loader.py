"""Loading rule files: parse, validate, collect every error with its ``file:line``.

``load_rules`` reads every ``*.toml`` under the packaged ``correlator/detections`` folder
(and any site folders), validates each file against ``engine/spec.py`` and its kind's
params model, and checks what would make the pack unusable (unknown kinds, bad regular
expressions, a rule id or name used twice). Problems are gathered, never raised one by
one, as pySigma's ``collect_errors`` does; ``RuleSet.raise_errors`` turns them into one
``RuleError`` listing them all. Conventions (names, bands, ATT&CK, fixtures, lock) are the
lints' business (``engine/lint.py``).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from correlator import __version__
from correlator.engine.batch import check_regex
from correlator.engine.registry import KINDS
from correlator.engine.rule import Rule
from correlator.engine.spec import AllOf, AnyOf, Condition, Not, Predicate, RuleFile
from correlator.engine.toml_lines import key_lines, line_of
from correlator.errors import ConfigError, Location

LOCK_FILE: Final = "version.lock.json"


class RuleError(ConfigError):
    """One or more rule files are invalid; every message starts with ``file:line``."""

    def __init__(self, location: Location, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules that loaded, problems of those that did not, and the pack's fingerprint."""

    rules: tuple[Rule, ...]
    errors: tuple[RuleError, ...]

    @property
    def fingerprint(self) -> str:
        """sha256 over Furui's version and every rule's id and content hash.

        As capa's ``compute_cache_identifier``: it names exactly which rules ran.
        """
        digest = hashlib.sha256(f"furui {__version__}\n".encode())
        for rule in sorted(self.rules, key=lambda r: r.id):
            digest.update(f"{rule.id} {rule.sha256}\n".encode())
        return digest.hexdigest()

    def raise_errors(self) -> None:
        """Raise one ``RuleError`` listing every problem, if there is any.

        Raises:
            RuleError: at least one rule file is invalid.
        """
        if not self.errors:
            return
        first = self.errors[0]
        listing = "\n".join(str(e) for e in self.errors)
        error = RuleError(first.location, first.reason)
        error.args = (f"{len(self.errors)} rule problem(s):\n{listing}",)
        raise error


def packaged_rules() -> Path:
    """The folder of rules shipped in the package."""
    return Path(str(resources.files("correlator").joinpath("detections")))


def rule_paths(folders: Iterable[Path]) -> list[Path]:
    """Every rule file under ``folders``, sorted."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_file():
            found.append(folder)
        elif folder.is_dir():
            found.extend(p for p in folder.rglob("*.toml") if p.is_file())
    return sorted(set(found))


def load_rule(path: Path) -> Rule:
    """Load one rule file.

    Raises:
        RuleError: the file is unreadable or invalid (the first problem; use
            ``load_rules`` to get them all).
    """
    rule, errors = _load(path)
    if errors:
        raise errors[0]
    assert rule is not None  # noqa: S101 - no errors means a rule
    return rule


def load_rules(folders: Sequence[Path] | None = None) -> RuleSet:
    """Load every rule under ``folders`` (default: the packaged pack), collecting errors."""
    paths = rule_paths(folders if folders is not None else [packaged_rules()])
    rules: list[Rule] = []
    errors: list[RuleError] = []
    for path in paths:
        rule, problems = _load(path)
        errors.extend(problems)
        if rule is not None:
            rules.append(rule)
    errors.extend(_duplicates(rules))
    return RuleSet(tuple(rules), tuple(errors))


def _load(path: Path) -> tuple[Rule | None, list[RuleError]]:
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, [RuleError(Location(str(path)), f"cannot read the rule: {error}")]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"at line (\d+)", str(error))  # tomllib has no lineno before 3.14
        line = int(found.group(1)) if found else None
        return None, [RuleError(Location(str(path), line), f"not valid TOML: {error}")]
    lines = key_lines(text)

    def at(loc: Sequence[str | int], reason: str) -> RuleError:
        return RuleError(Location(str(path), line_of(lines, loc) or 1), reason)

    try:
        spec = RuleFile.model_validate(data)
    except ValidationError as error:
        return None, [at(e["loc"], _reason(e)) for e in error.errors()]
    kind = KINDS.get(spec.rule.kind)
    if kind is None:
        known = ", ".join(sorted(KINDS))
        return None, [at(("rule", "kind"), f"unknown kind {spec.rule.kind!r}; known: {known}")]
    try:
        params = kind.Params.model_validate(spec.rule.params)
    except ValidationError as error:
        return None, [at(("rule", "params", *e["loc"]), _reason(e)) for e in error.errors()]
    problems = [
        at(("rule", "params"), f"regex {pattern!r}: {why}")
        for pattern in _patterns(params)
        if (why := check_regex(pattern)) is not None
    ]
    if problems:
        return None, problems
    sha = hashlib.sha256(raw).hexdigest()
    return Rule(path=path, spec=spec, params=params, sha256=sha, lines=lines), []


def _reason(error: object) -> str:
    detail = error  # pydantic's ErrorDetails
    assert isinstance(detail, dict)  # noqa: S101
    where = ".".join(str(p) for p in detail["loc"])
    return f"{where}: {detail['msg']}" if where else str(detail["msg"])


def _patterns(params: object) -> list[str]:
    """Every regular expression in a params model's predicates (``where`` and steps)."""
    found: list[str] = []

    def walk(predicates: Iterable[Predicate]) -> None:
        for predicate in predicates:
            if isinstance(predicate, Condition):
                if predicate.op == "regex":
                    found.extend(str(v) for v in predicate.values)
            elif isinstance(predicate, Not):
                walk([predicate.not_])
            elif isinstance(predicate, AnyOf):
                walk(predicate.any)
            elif isinstance(predicate, AllOf):
                walk(predicate.all)

    walk(getattr(params, "where", ()))
    for step in getattr(params, "steps", ()):
        walk(step.where)
    return found


def _duplicates(rules: list[Rule]) -> list[RuleError]:
    errors: list[RuleError] = []
    for attribute, label in (("id", "rule_id"), ("name", "name")):
        seen: dict[str, Rule] = {}
        for rule in rules:
            value = getattr(rule, attribute)
            if value in seen:
                other = seen[value]
                errors.append(
                    RuleError(
                        Location(str(rule.path), rule.lines.get(("metadata", "rule_id"), 1)),
                        f"{label} {value!r} is also used by {other.where('metadata', 'rule_id')}",
                    )
                )
            else:
                seen[value] = rule
    return errors
