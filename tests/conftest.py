"""Shared fixtures: paths to real data, settings isolated in a temporary folder, a runner."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from correlator.pipeline import RunReport, analyze
from correlator.settings import Settings, load_settings
from correlator.state import Store

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = REPO.parent / "shared" / "datasets"


def shared(*parts: str) -> Path:
    """A path under the shared datasets; the test skips (never in CI) where they are absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing; CI machines have ../shared/datasets")
        pytest.skip(f"{path} not present on this machine (shared datasets live in ../shared)")
    return path


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Default settings with the store in a temporary folder and no FURUI_* leaking in."""
    for name in list(os.environ):
        if name.startswith("FURUI_"):
            monkeypatch.delenv(name)
    loaded = load_settings()
    store = loaded.store.model_copy(update={"path": tmp_path / "furui.duckdb"})
    return loaded.model_copy(update={"store": store})


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """An empty embedded store in the temporary folder."""
    with Store.open(settings.store.path) as opened:
        yield opened


Runner = Callable[..., RunReport]


@pytest.fixture
def run(settings: Settings) -> Runner:
    """Run ``analyze`` over paths with the temporary store; extra kwargs patch settings."""

    def runner(paths: Sequence[Path], **ingest: int) -> RunReport:
        current = settings
        if ingest:
            current = settings.model_copy(
                update={"ingest": settings.ingest.model_copy(update=ingest)}
            )
        with Store.open(current.store.path) as opened:
            return analyze(list(paths), current, opened)

    return runner
