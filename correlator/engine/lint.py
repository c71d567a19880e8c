"""Corpus lints: conventions every rule file follows, checked as a whole (capa's ``Lint``).

Each lint is a class with a ``name``, a ``level`` (``FAIL`` stops ``furui rules lint`` and
the test suite; ``WARN`` is reported only) and a ``recommendation`` telling how to fix it.
``check`` looks at one rule; ``finalize`` looks across rules (pySigma's validators), for
example for fixture folders that belong to no rule. ``run_lints`` gathers every issue of
every rule, so one run lists everything to fix.
"""

from __future__ import annotations

import re
from abc import ABC
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Final

from correlator.engine.fields import is_known_field, is_known_stream
from correlator.engine.fixtures import EXPECTED, NEGATIVE, POSITIVE, README
from correlator.engine.kinds.base import placeholders
from correlator.engine.loader import RuleSet
from correlator.engine.lock import LockEntry
from correlator.engine.registry import KINDS
from correlator.engine.rule import Rule
from correlator.engine.spec import RISK_BANDS
from correlator.schema.attack import load_attack

_STEM: Final = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")


class Level(StrEnum):
    """How bad an issue is."""

    FAIL = "FAIL"
    WARN = "WARN"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found by a lint."""

    lint: str
    level: Level
    where: str  # path:line
    message: str
    recommendation: str

    def __str__(self) -> str:
        return f"{self.where}: {self.level} {self.lint}: {self.message} ({self.recommendation})"


@dataclass(frozen=True, slots=True)
class LintContext:
    """What lints compare rules with."""

    lock: dict[str, LockEntry] = field(default_factory=dict)
    fixtures: Path | None = None  # tests/detections; None skips the fixture lints


class Lint(ABC):
    """One convention."""

    name: ClassVar[str]
    level: ClassVar[Level] = Level.FAIL
    recommendation: ClassVar[str]

    def check(self, rule: Rule, context: LintContext) -> list[Issue]:
        """Issues of one rule."""
        del rule, context
        return []

    def finalize(self, rules: Sequence[Rule], context: LintContext) -> list[Issue]:
        """Issues across rules, after every rule was checked."""
        del rules, context
        return []

    def issue(self, where: str, message: str, level: Level | None = None) -> Issue:
        """An issue of this lint."""
        return Issue(self.name, level or self.level, where, message, self.recommendation)


def tactic_slug(rule: Rule) -> str | None:
    """Folder and file prefix of a rule: its first tactic's short name, ``_`` for ``-``."""
    tactic = load_attack().tactic(rule.spec.rule.attack[0].tactic)
    return tactic.shortname.replace("-", "_") if tactic is not None else None


class FileNameMatchesTactic(Lint):
    """``<tactic slug>_<snake name>.toml`` inside ``<tactic slug>/``."""

    name = "file-name-tactic"
    recommendation = "rename the file <tactic>_<what_it_detects>.toml in the <tactic>/ folder"

    def check(self, rule: Rule, context: LintContext) -> list[Issue]:  # noqa: ARG002
        """Folder and stem follow the first tactic."""
        slug = tactic_slug(rule)
        if slug is None:
            return []
        issues = []
        if rule.path.parent.name != slug:
            issues.append(
                self.issue(rule.where(), f"file is in {rule.path.parent.name}/, not {slug}/")
            )
        if not rule.path.stem.startswith(f"{slug}_") or not _STEM.match(rule.path.stem):
            issues.append(
                self.issue(rule.where(), f"file name {rule.path.name} does not start {slug}_")
            )
        return issues


class AttackPairsExist(Lint):
    """Every ``[[rule.attack]]`` pair exists in ATT&CK 18.1 and the technique is the tactic's."""

    name = "attack-mapping"
    recommendation = "use current ids from https://attack.mitre.org (vendored: ATT&CK 18.1)"

    def check(self, rule: Rule, context: LintContext) -> list[Issue]:  # noqa: ARG002
        """Each pair against the vendored tables."""
        attack = load_attack()
        return [
            self.issue(rule.where("rule", "attack", i, "technique"), problem)
            for i, pair in enumerate(rule.spec.rule.attack)
            if (problem := attack.problem(pair.tactic, pair.technique)) is not None
        ]


class RiskScoreInBand(Lint):
    """``risk_score`` lies in its severity's band (low 0–21 … critical 74–100)."""

    name = "risk-score-band"
    recommendation = "change risk_score or severity so that they agree"

    def check(self, rule: Rule, context: LintContext) -> list[Issue]:  # noqa: ARG002
        """Band check."""
        body = rule.spec.rule
        low, high = RISK_BANDS[body.severity]
        if low <= body.risk_score <= high:
            return []
        return [
            self.issue(
                rule.where("rule", "risk_score"),
                f"risk_score {body.risk_score} is outside the {body.severity} band {low}–{high}",
            )
        ]


class FieldsExist(Lint):
    """Every data source has a mapping, and every field read exists on its events."""

    name = "known-fields"
    recommendation = "use the ECS or zeek.*/suricata.eve.* names of normalise/mappings"

    def check(self, rule: Rule, context: LintContext) -> list[Issue]:  # noqa: ARG002
        """Streams and fields against the mapping catalogue."""
        streams = sorted(KINDS[rule.kind].streams_of(rule) | set(rule.spec.rule.data_sources))
        issues = [
            self.issue(rule.where("rule", "data_sources"), f"no mapping produces stream {s!r}")
            for s in streams
            if not is_known_stream(s)
        ]
        issues.extend(
            self.issue(
                rule.where("rule", "params"),
                f"field {name!r} exists in none of {', '.join(streams)}",
            )
            for name in dict.fromkeys(rule.params.fields())
            if not any(is_known_field(s, name) for s in streams)
        )
        steps = getattr(rule.params, "steps", ())
        issues.extend(
            self.issue(rule.where("rule", "data_sources"), f"step stream {s.stream!r} missing")
            for s in steps
            if s.stream not in rule.spec.rule.data_sources
        )
        # absence: the judged stream and every companion clause's stream
        clauses = getattr(rule.params, "clauses", ())
        judged = getattr(rule.params, "stream", None)
        issues.extend(
            self.issue(rule.where("rule", "data_sources"), f"stream {stream!r} missing")
            for stream in dict.fromkeys(
                [*([judged] if judged else []), *(c.stream for c in clauses)]
            )
            if stream not in rule.spec.rule.data_sources
        )
        return issues


class MessageFieldsKnown(Lint):
    """A message template uses only placeholders its kind fills."""

    name = "message-placeholders"
    recommendation = "use the kind's statistics (docs/rules.md) or the rule's group fields"

    def check(self, rule: Rule, context: LintContext) -> list[Issue]:  # noqa: ARG002
        """Placeholders against the kind's list."""
        template = rule.spec.rule.message
        if not template:
            return []
        allowed = KINDS[rule.kind].message_fields(rule.params)
        return [
            self.issue(rule.where("rule", "message"), f"unknown placeholder {{{name}}}")
            for name in placeholders(template)
            if name not in allowed
        ]


class DeprecationExplained(Lint):
    """A deprecated rule says when and why; only a deprecated rule does."""

    name = "deprecation"
    recommendation = 'add deprecation = { date = …, reason = "…" } to [metadata]'

    def check(self, rule: Rule, context: LintContext) -> list[Issue]:  # noqa: ARG002
        """Maturity and deprecation agree."""
        meta = rule.spec.metadata
        if (meta.maturity == "deprecated") != (meta.deprecation is not None):
            return [
                self.issue(rule.where("metadata", "maturity"), "maturity and deprecation disagree")
            ]
        return []


class ProductionNeedsEvidence(Lint):
    """``production`` needs fixtures (positive, negative, golden, README) and false positives.

    An ``experimental`` rule without them only warns (capa's nursery).
    """

    name = "production-evidence"
    recommendation = (
        "carve tests/detections/<rule stem>/ from real logs, run `furui rules test "
        "--update-golden`, list false_positives; or mark the rule experimental"
    )

    def check(self, rule: Rule, context: LintContext) -> list[Issue]:
        """Fixture files and false positives."""
        meta = rule.spec.metadata
        if meta.maturity == "deprecated":
            return []
        level = Level.FAIL if meta.maturity == "production" else Level.WARN
        issues = []
        if not rule.spec.rule.false_positives:
            issues.append(self.issue(rule.where("rule"), "no false_positives listed", level))
        if context.fixtures is None:
            return issues
        folder = context.fixtures / rule.path.stem
        for name in (POSITIVE, NEGATIVE, EXPECTED, README):
            path = folder / name
            if not path.is_file() or not path.read_text(encoding="utf-8").strip():
                issues.append(self.issue(rule.where(), f"{path} is missing or empty", level))
        return issues

    def finalize(self, rules: Sequence[Rule], context: LintContext) -> list[Issue]:
        """Fixture folders whose rule is gone."""
        if context.fixtures is None or not context.fixtures.is_dir():
            return []
        stems = {r.path.stem for r in rules}
        return [
            self.issue(str(p), "fixture folder without a rule (stray)")
            for p in sorted(context.fixtures.iterdir())
            if p.is_dir() and not p.name.startswith(("_", ".")) and p.name not in stems
        ]


class VersionLocked(Lint):
    """The file's hash and version match ``version.lock.json``."""

    name = "version-lock"
    recommendation = "bump `version` (and `updated`) and run `furui rules lock`"

    def check(self, rule: Rule, context: LintContext) -> list[Issue]:
        """Lock entry present and current."""
        entry = context.lock.get(rule.id)
        where = rule.where("metadata", "version")
        if entry is None:
            return [self.issue(where, "rule is not in version.lock.json")]
        if entry.sha256 != rule.sha256:
            return [self.issue(where, f"content changed since version {entry.version} was locked")]
        if entry.version != rule.version:
            return [self.issue(where, f"version {rule.version} but locked {entry.version}")]
        return []


#: Every lint, in the order issues are reported.
LINTS: Final[tuple[type[Lint], ...]] = (
    FileNameMatchesTactic,
    AttackPairsExist,
    RiskScoreInBand,
    FieldsExist,
    MessageFieldsKnown,
    DeprecationExplained,
    ProductionNeedsEvidence,
    VersionLocked,
)


def run_lints(
    ruleset: RuleSet, context: LintContext, lints: Iterable[type[Lint]] = LINTS
) -> list[Issue]:
    """Every issue of every rule (load errors first, as failures)."""
    issues = [
        Issue("load", Level.FAIL, str(e.location), e.reason, "fix the rule file")
        for e in ruleset.errors
    ]
    active = [lint() for lint in lints]
    for rule in ruleset.rules:
        for lint in active:
            issues.extend(lint.check(rule, context))
    for lint in active:
        issues.extend(lint.finalize(ruleset.rules, context))
    return issues


def failures(issues: Iterable[Issue]) -> list[Issue]:
    """The issues that fail the lint run."""
    return [i for i in issues if i.level is Level.FAIL]
