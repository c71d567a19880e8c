"""Loading rules: every problem of every file at once, each with file:line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from correlator.engine.loader import RuleError, load_rules, packaged_rules

GOOD = packaged_rules() / "discovery" / "discovery_vertical_port_scan.toml"


def _copy(tmp_path: Path, name: str, edit: tuple[str, str] | None = None) -> Path:
    target = tmp_path / "discovery" / name
    target.parent.mkdir(exist_ok=True)
    text = GOOD.read_text()
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    target.write_text(text)
    return target


def test_all_errors_of_all_files_are_reported_with_lines(tmp_path: Path) -> None:
    window = _copy(tmp_path, "discovery_a.toml", ('window = "10m"', 'window = "ten minutes"'))
    kind = _copy(tmp_path, "discovery_b.toml", ('kind = "threshold"', 'kind = "thershold"'))
    regex = _copy(
        tmp_path,
        "discovery_c.toml",
        ('op = "in", value = ["tcp", "udp"]', 'op = "regex", value = "(?<=x)y"'),
    )
    toml = _copy(tmp_path, "discovery_d.toml", ("[rule.params]", "[rule.params"))
    ruleset = load_rules([tmp_path])
    assert ruleset.rules == ()
    text = "\n".join(str(e) for e in ruleset.errors)
    lines = GOOD.read_text().splitlines()
    window_line = next(i for i, line in enumerate(lines, 1) if line.startswith("window ="))
    assert f"{window}:{window_line}: window:" in text
    assert re.search(rf"{re.escape(str(kind))}:\d+: unknown kind 'thershold'", text)
    assert re.search(rf"{re.escape(str(regex))}:\d+: regex", text)
    assert re.search(rf"{re.escape(str(toml))}:\d+: not valid TOML", text)
    with pytest.raises(RuleError, match="4 rule problem"):
        ruleset.raise_errors()


def test_ids_and_names_are_unique(tmp_path: Path) -> None:
    _copy(tmp_path, "discovery_a.toml")
    second = _copy(tmp_path, "discovery_b.toml")
    errors = [str(e) for e in load_rules([tmp_path]).errors]
    assert any(e.startswith(f"{second}:") and "rule_id" in e for e in errors)
    assert any("name" in e for e in errors)


def test_metadata_is_validated(tmp_path: Path) -> None:
    _copy(tmp_path, "discovery_a.toml", ('rule_id = "', 'rule_id = "X'))
    _copy(tmp_path, "discovery_b.toml", ("updated = 2026-11-27", "updated = 2020-01-01"))
    text = "\n".join(str(e) for e in load_rules([tmp_path]).errors)
    assert "not a UUID" in text
    assert "updated is before created" in text


def test_fingerprint_follows_rule_content(tmp_path: Path) -> None:
    path = _copy(tmp_path, "discovery_a.toml")
    before = load_rules([tmp_path]).fingerprint
    assert load_rules([tmp_path]).fingerprint == before
    path.write_text(path.read_text().replace("min_distinct = 50", "min_distinct = 60"))
    assert load_rules([tmp_path]).fingerprint != before
    shutil.rmtree(tmp_path / "discovery")
