"""``furui rules``: list, lint, test, new and lock, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from correlator.engine.loader import load_rules
from tests.conftest import REPO
from tests.test_cli import furui

FIXTURES = REPO / "tests" / "detections"


def test_list_json_has_every_rule(tmp_path: Path) -> None:
    done = furui("rules", "list", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert {r["id"] for r in payload["rules"]} == {r.id for r in load_rules().rules}
    assert payload["errors"] == []
    assert len(payload["fingerprint"]) == 64
    first = payload["rules"][0]
    assert {"name", "kind", "severity", "risk_score", "maturity", "version", "techniques"} <= set(
        first
    )


def test_lint_json_passes_on_the_pack(tmp_path: Path) -> None:
    done = furui("rules", "lint", "--json", "--fixtures", str(FIXTURES), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    payload = json.loads(done.stdout)
    assert payload["failures"] == 0
    assert payload["rules"] == len(load_rules().rules)


def test_test_runs_named_rules(tmp_path: Path) -> None:
    done = furui(
        "rules", "test", "discovery_vertical_port_scan", "--fixtures", str(FIXTURES), cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok   discovery_vertical_port_scan: 1 finding(s)")


def test_new_scaffolds_a_rule_its_fixtures_and_lint_explains_what_is_missing(
    tmp_path: Path,
) -> None:
    rules, fixtures = tmp_path / "rules", tmp_path / "fixtures"
    done = furui(
        "rules", "new", "discovery", "SMB sweep", "--kind", "threshold",
        "--technique", "T1046", "--path", str(rules), "--fixtures", str(fixtures), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    created = rules / "discovery" / "discovery_smb_sweep.toml"
    assert created.is_file()
    assert (fixtures / "discovery_smb_sweep" / "README.md").is_file()
    ruleset = load_rules([created])
    assert ruleset.errors == ()
    assert ruleset.rules[0].spec.metadata.maturity == "experimental"
    lint = furui(
        "rules", "lint", "--json", "--path", str(rules), "--fixtures", str(fixtures), cwd=tmp_path
    )
    issues = [i for i in json.loads(lint.stdout)["issues"] if str(created) in i["where"]]
    lints = {(i["lint"], i["level"]) for i in issues}
    assert ("production-evidence", "WARN") in lints  # experimental: warns, does not fail
    assert ("version-lock", "FAIL") in lints  # site rules are not in the pack's lock


def test_a_broken_rule_fails_lint_with_its_location(tmp_path: Path) -> None:
    rules = tmp_path / "rules" / "discovery"
    rules.mkdir(parents=True)
    (rules / "discovery_broken.toml").write_text("[metadata]\nrule_id = 'x'\n")
    done = furui("rules", "lint", "--path", str(tmp_path / "rules"), cwd=tmp_path)
    assert done.returncode == 4
    assert f"{rules / 'discovery_broken.toml'}:2" in done.stdout
