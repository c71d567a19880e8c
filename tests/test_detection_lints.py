"""The rule pack passes every lint, and every lint catches what it is for.

The corpus test reports all failures of all rules in one message (elastic's
``test_all_rules``); the other tests break one convention each in a copy of a real rule.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from correlator.engine.lint import Issue, LintContext, failures, run_lints
from correlator.engine.loader import load_rules, packaged_rules
from correlator.engine.lock import lock_path, read_lock, write_lock
from correlator.errors import ConfigError
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "detections"
RULE = "command_and_control/command_and_control_http_request_to_ip_address.toml"


def test_the_pack_passes_every_lint() -> None:
    issues = run_lints(load_rules(), LintContext(read_lock(lock_path()), FIXTURES))
    failed = failures(issues)
    assert not failed, "rule lints failed:\n" + "\n".join(str(i) for i in failed)
    assert not issues, "rule lint warnings:\n" + "\n".join(str(i) for i in issues)


def test_the_pack_has_every_rule_locked_and_nothing_else() -> None:
    lock = read_lock(lock_path())
    assert set(lock) == {r.id for r in load_rules().rules}


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """A copy of one real rule, its fixtures and its lock entry, to break."""
    rules = tmp_path / "rules"
    target = rules / RULE
    target.parent.mkdir(parents=True)
    shutil.copy(packaged_rules() / RULE, target)
    shutil.copytree(FIXTURES / Path(RULE).stem, tmp_path / "fixtures" / Path(RULE).stem)
    write_lock(load_rules([rules]), rules / "version.lock.json")
    return tmp_path


def _issues(pack: Path) -> list[Issue]:
    rules = pack / "rules"
    context = LintContext(read_lock(rules / "version.lock.json"), pack / "fixtures")
    return run_lints(load_rules([rules]), context)


def _edit(pack: Path, old: str, new: str) -> None:
    path = pack / "rules" / RULE
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _lints(issues: list[Issue]) -> set[str]:
    return {i.lint for i in failures(issues)}


def test_an_unchanged_copy_passes(pack: Path) -> None:
    assert _issues(pack) == []


@pytest.mark.parametrize(
    ("old", "new", "lint", "says"),
    [
        ('technique = "T1071.001"', 'technique = "T1046"', "attack-mapping", "does not belong"),
        ('technique = "T1071.001"', 'technique = "T1002"', "attack-mapping", "revoked"),
        ("risk_score = 30", "risk_score = 60", "risk-score-band", "outside the medium band"),
        ('field = "url.domain"', 'field = "url.domian"', "known-fields", "url.domian"),
        ('"zeek.http"', '"zeek.htp"', "known-fields", "no mapping"),
        (
            "{url.domain} by address",
            "{url.domian} by address",
            "message-placeholders",
            "url.domian",
        ),
        ('maturity = "production"', 'maturity = "deprecated"', "deprecation", "disagree"),
        ("false_positives = [", "false_positives = [] \nxx = [", "load", "xx"),
    ],
)
def test_each_lint_catches_its_problem(
    pack: Path, old: str, new: str, lint: str, says: str
) -> None:
    _edit(pack, old, new)
    issues = [i for i in _issues(pack) if i.lint != "version-lock"]
    assert lint in _lints(issues), issues
    message = " ".join(str(i) for i in issues if i.lint == lint)
    assert says in message
    assert re.search(rf"{re.escape(str(pack / 'rules' / RULE))}:\d+", message)


def test_changed_content_needs_a_version_bump_and_a_lock(pack: Path) -> None:
    _edit(pack, "risk_score = 30", "risk_score = 31")
    assert "version-lock" in _lints(_issues(pack))
    rules = pack / "rules"
    with pytest.raises(ConfigError, match="bump `version`"):
        write_lock(load_rules([rules]), rules / "version.lock.json")
    _edit(pack, "version = 1", "version = 2")
    write_lock(load_rules([rules]), rules / "version.lock.json")
    assert _issues(pack) == []


def test_wrong_folder_and_name(pack: Path) -> None:
    source = pack / "rules" / RULE
    moved = pack / "rules" / "discovery" / "http_by_ip.toml"
    moved.parent.mkdir()
    source.rename(moved)
    shutil.move(pack / "fixtures" / Path(RULE).stem, pack / "fixtures" / "http_by_ip")
    messages = [str(i) for i in failures(_issues(pack)) if i.lint == "file-name-tactic"]
    assert any("not command_and_control/" in m for m in messages)
    assert any("does not start command_and_control_" in m for m in messages)


def test_production_needs_fixtures_experimental_only_warns(pack: Path) -> None:
    (pack / "fixtures" / Path(RULE).stem / "negative.ndjson").write_text("")
    issues = [i for i in _issues(pack) if i.lint == "production-evidence"]
    assert [i.level for i in issues] == ["FAIL"]
    _edit(pack, 'maturity = "production"', 'maturity = "experimental"')
    issues = [i for i in _issues(pack) if i.lint == "production-evidence"]
    assert [i.level for i in issues] == ["WARN"]


def test_stray_fixture_folder(pack: Path) -> None:
    (pack / "fixtures" / "no_such_rule").mkdir()
    assert any("stray" in str(i) for i in failures(_issues(pack)))


def test_every_stream_an_absence_rule_reads_is_a_data_source(tmp_path: Path) -> None:
    name = "command_and_control/command_and_control_tls_to_address_never_looked_up.toml"
    target = tmp_path / "rules" / name
    target.parent.mkdir(parents=True)
    text = (packaged_rules() / name).read_text()
    target.write_text(
        text.replace('data_sources = ["zeek.ssl", "zeek.dns"]', 'data_sources = ["zeek.ssl"]')
    )
    issues = run_lints(load_rules([tmp_path / "rules"]), LintContext({}, FIXTURES))
    assert any(
        i.lint == "known-fields" and "'zeek.dns' missing" in str(i) for i in failures(issues)
    )
