"""``furui rules``: list, lint, test, scaffold and lock the heuristic rules.

Mounted on the main command line as ``furui rules``. Every command reads the packaged pack
(``correlator/detections``) plus any ``--path`` folders, and the fixtures of a source
checkout (``tests/detections``) unless ``--fixtures`` names others.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.table import Table

from correlator.cli_common import JsonOption, fail_cleanly
from correlator.engine.fixtures import (
    EXPECTED,
    NEGATIVE,
    POSITIVE,
    README,
    run_fixtures,
    write_expected,
)
from correlator.engine.lint import LintContext, failures, run_lints
from correlator.engine.loader import RuleSet, load_rules, packaged_rules
from correlator.engine.lock import lock_path, read_lock, write_lock
from correlator.engine.registry import KINDS
from correlator.errors import ExitCode, FuruiError
from correlator.schema.attack import load_attack

rules_app = typer.Typer(
    help="List, lint, test, scaffold and lock the heuristic rules (docs/rules.md).",
    no_args_is_help=True,
)

PathsOption = Annotated[
    list[Path] | None,
    typer.Option("--path", help="Extra rule folder (repeatable), read besides the pack."),
]
FixturesOption = Annotated[
    Path | None,
    typer.Option(
        "--fixtures",
        help="Fixture folders root. [default: tests/detections of a source checkout]",
        show_default=False,
    ),
]

#: A skeleton of params per kind, for ``rules new``; the author fills in the logic.
_SKELETONS: Final[dict[str, str]] = {
    "match": 'where = [{ field = "network.direction", op = "eq", value = "outbound" }]\n'
    'group_by = []\nwindow = "1h"\n',
    "threshold": 'where = []\ngroup_by = ["destination.ip"]\ndistinct_field = "destination.port"\n'
    'min_distinct = 50\nwindow = "10m"\n',
    "sequence": 'maxspan = "10m"\nsteps = [\n'
    '  { stream = "zeek.ssh", by = ["source.ip", "destination.ip"], where = [] },\n'
    '  { stream = "zeek.ssh", by = ["source.ip", "destination.ip"], where = [] },\n]\n',
    "beacon": 'where = [{ field = "network.direction", op = "eq", value = "outbound" }]\n'
    'group_by = ["destination.ip", "destination.port"]\nsize_field = "source.bytes"\n',
    "new": 'where = []\nfields = ["destination.ip"]\nby = ["source.ip"]\nlearning = "1d"\n',
    "rare": 'where = []\nfields = ["user_agent.original"]\nmax_hosts = 1\nlearning = "1d"\n',
    "absence": 'stream = "zeek.connection"\nwhere = []\ngroup_by = ["destination.ip"]\n'
    'window = "1h"\nunless = [\n  { stream = "zeek.dns", on = ["destination.ip"], '
    'by = ["dns.resolved_ip"], before = "1h" },\n]\n',
}


#: The streams a skeleton reads (every stream of its params must be listed).
_SOURCE: Final = '["zeek.connection"]'
_SOURCES: Final[dict[str, str]] = {
    "sequence": '["zeek.ssh"]',
    "absence": '["zeek.connection", "zeek.dns"]',
}


def _folders(paths: list[Path] | None) -> list[Path]:
    return [packaged_rules(), *(paths or [])]


def default_fixtures() -> Path | None:
    """``tests/detections`` of the source checkout the package runs from, if any."""
    folder = packaged_rules().parents[1] / "tests" / "detections"
    return folder if folder.is_dir() else None


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@rules_app.command("list")
@fail_cleanly
def list_rules(paths: PathsOption = None, json_output: JsonOption = False) -> None:
    """Show every rule: id, name, kind, severity, maturity, ATT&CK ids."""
    ruleset = load_rules(_folders(paths))
    rows = [
        {
            "id": r.id,
            "name": r.name,
            "kind": r.kind,
            "severity": r.spec.rule.severity,
            "risk_score": r.spec.rule.risk_score,
            "maturity": r.spec.metadata.maturity,
            "version": r.version,
            "tactics": r.tactics,
            "techniques": r.techniques,
            "data_sources": list(r.spec.rule.data_sources),
            "path": str(r.path),
        }
        for r in sorted(ruleset.rules, key=lambda r: (r.path.parent.name, r.path.name))
    ]
    if json_output:
        _print_json(
            {
                "rules": rows,
                "errors": [str(e) for e in ruleset.errors],
                "fingerprint": ruleset.fingerprint,
            }
        )
        return
    table = Table(title=f"{len(rows)} rules", title_justify="left")
    for name in ("Kind", "Severity", "Maturity", "Techniques", "Name", "Id"):
        table.add_column(name, overflow="fold")
    for r in ruleset.rules:
        table.add_row(
            r.kind,
            f"{r.spec.rule.severity} {r.spec.rule.risk_score}",
            r.spec.metadata.maturity,
            " ".join(r.techniques),
            r.name,
            r.id,
        )
    Console(width=200 if not sys.stdout.isatty() else None).print(table)
    for error in ruleset.errors:
        typer.echo(f"furui: error: {error}", err=True)


@rules_app.command("lint")
@fail_cleanly
def lint_rules(
    paths: PathsOption = None, fixtures: FixturesOption = None, json_output: JsonOption = False
) -> None:
    """Check every rule against the conventions; exit 4 if any check fails."""
    ruleset = load_rules(_folders(paths))
    context = LintContext(read_lock(lock_path()), fixtures or default_fixtures())
    issues = run_lints(ruleset, context)
    failed = failures(issues)
    if json_output:
        _print_json(
            {
                "rules": len(ruleset.rules),
                "failures": len(failed),
                "warnings": len(issues) - len(failed),
                "issues": [
                    {
                        "lint": i.lint,
                        "level": str(i.level),
                        "where": i.where,
                        "message": i.message,
                        "recommendation": i.recommendation,
                    }
                    for i in issues
                ],
            }
        )
    else:
        for issue in issues:
            typer.echo(str(issue))
        typer.echo(
            f"{len(ruleset.rules)} rules: {len(failed)} failures, "
            f"{len(issues) - len(failed)} warnings"
        )
    if failed:
        raise typer.Exit(int(ExitCode.CONFIG))


@rules_app.command("test")
@fail_cleanly
def run_rule_tests(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Rule ids or file stems (default: every rule).", show_default=False),
    ] = None,
    paths: PathsOption = None,
    fixtures: FixturesOption = None,
    update_golden: Annotated[
        bool, typer.Option("--update-golden", help="Write each rule's findings as expected.json.")
    ] = False,
) -> None:
    """Run rules over their positive and negative fixtures; exit 1 if any fails."""
    ruleset = load_rules(_folders(paths))
    ruleset.raise_errors()
    root = fixtures or default_fixtures()
    if root is None:
        raise FuruiError("no fixtures folder: give --fixtures (tests/detections)")
    chosen = [r for r in ruleset.rules if not names or r.id in names or r.path.stem in names]
    failed = 0
    for rule in sorted(chosen, key=lambda r: r.path.stem):
        folder = root / rule.path.stem
        if not (folder / POSITIVE).is_file():
            typer.echo(f"SKIP {rule.path.stem}: no fixtures in {folder}")
            continue
        result = run_fixtures(rule, folder)
        if update_golden and result.positive:
            write_expected(result)
            result = run_fixtures(rule, folder)
        if result.problems:
            failed += 1
            typer.echo(f"FAIL {rule.path.stem}")
            for problem in result.problems:
                typer.echo(f"  {problem}")
        else:
            typer.echo(f"ok   {rule.path.stem}: {len(result.positive)} finding(s)")
    if failed:
        raise typer.Exit(1)


@rules_app.command("new")
@fail_cleanly
def new_rule(  # noqa: PLR0917 - typer commands take their options as parameters
    tactic: Annotated[str, typer.Argument(help="Tactic id or short name (TA0007, discovery).")],
    name: Annotated[str, typer.Argument(help="The rule's name, in words.")],
    kind: Annotated[str, typer.Option("--kind", help=f"One of {', '.join(KINDS)}.")] = "threshold",
    technique: Annotated[str, typer.Option("--technique", help="ATT&CK technique id.")] = "",
    folder: Annotated[
        Path | None, typer.Option("--path", help="Rule folder root. [default: the pack]")
    ] = None,
    fixtures: FixturesOption = None,
) -> None:
    """Scaffold a rule file, its fixture folder and its lock entry (maturity experimental)."""
    if kind not in KINDS:
        raise typer.BadParameter(f"kind must be one of {', '.join(KINDS)}")
    attack = load_attack()
    found = attack.tactic(tactic) or next(
        (t for t in attack.tactics.values() if t.shortname == tactic.replace("_", "-")), None
    )
    if found is None:
        raise typer.BadParameter(f"unknown tactic {tactic!r}")
    slug = found.shortname.replace("-", "_")
    stem = f"{slug}_" + "_".join("".join(c for c in w.lower() if c.isalnum()) for w in name.split())
    root = folder or packaged_rules()
    path = root / slug / f"{stem}.toml"
    if path.exists():
        raise typer.BadParameter(f"{path} exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_skeleton(found.id, technique, name, kind), encoding="utf-8")
    target = (fixtures or default_fixtures() or Path("tests/detections")) / stem
    target.mkdir(parents=True, exist_ok=True)
    for file in (POSITIVE, NEGATIVE):
        (target / file).touch()
    (target / README).write_text(
        f"# {name}\n\nPositive: <dataset>/<file>, rows …\nNegative: <dataset>/<file>, rows …\n"
        "Derived events (fields changed from a real event): say which, and why.\n",
        encoding="utf-8",
    )
    typer.echo(f"created {path}\ncreated {target}/ ({POSITIVE}, {NEGATIVE}, {README})")
    if folder is None:
        write_lock(load_rules([packaged_rules()]), lock_path())
        typer.echo(f"locked in {lock_path()}")
    typer.echo(
        f"next: carve events into {target}, then `furui rules test {stem} "
        f"--update-golden` and `furui rules lint`; {EXPECTED} is written by the test"
    )


def _skeleton(tactic: str, technique: str, name: str, kind: str) -> str:
    today = datetime.now(UTC).date().isoformat()
    return (
        f'[metadata]\nrule_id = "{uuid.uuid4()}"\nversion = 1\nmaturity = "experimental"\n'
        f"created = {today}\nupdated = {today}\n\n"
        f'[rule]\nname = "{name}"\n'
        'description = """\nWhat the rule sees, and why it matters.\n"""\n'
        f'severity = "low"\nrisk_score = 20\ndata_sources = {_SOURCES.get(kind, _SOURCE)}\n'
        "false_positives = []\nreferences = []\n"
        f'kind = "{kind}"\n\n[rule.params]\n{_SKELETONS[kind]}\n'
        f'[[rule.attack]]\ntactic = "{tactic}"\ntechnique = "{technique or "T0000"}"\n'
    )


@rules_app.command("lock")
@fail_cleanly
def lock_rules() -> None:
    """Record each packaged rule's version and hash in version.lock.json."""
    ruleset: RuleSet = load_rules([packaged_rules()])
    changed = write_lock(ruleset, lock_path())
    typer.echo(f"{lock_path()}: {len(ruleset.rules)} rules, {len(changed)} changed")
