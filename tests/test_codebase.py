"""Codebase rules that no linter checks: module size, no test doubles in the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "correlator"
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_modules_stay_small() -> None:
    large = {
        str(p.relative_to(REPO)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not large, f"modules over {MAX_LINES} lines, split them: {large}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_print_or_broad_except(path: Path) -> None:
    text = path.read_text()
    assert "except Exception" not in text
    assert "except:" not in text
