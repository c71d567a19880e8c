"""Every notebook runs on the shared data, and is committed clean (STYLE.md §9)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO, shared

NOTEBOOKS = REPO / "notebooks"
OUT = NOTEBOOKS / "out"  # git-ignored
#: Seconds any one cell may take; a whole notebook is meant to run in under a minute.
CELL_TIMEOUT = 60
# nbformat has no type information
read_notebook: Callable[..., Any] = nbformat.read
write_notebook: Callable[..., Any] = nbformat.write


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_training_notebook_exists() -> None:
    assert NOTEBOOKS / "train_model.ipynb" in _notebooks()


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_notebook_is_committed_clean(path: Path) -> None:
    notebook = read_notebook(path, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"], "first cell: parameters"
    assert notebook.cells[0] is code[0]
    for cell in code:
        assert cell.outputs == [], "strip outputs before committing"
        assert cell.execution_count is None
    assert all("../" not in c.source for c in notebook.cells), "no ../ paths"


@pytest.mark.notebook
@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FURUI_DATASETS", str(shared()))
    notebook = read_notebook(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    OUT.mkdir(exist_ok=True)
    write_notebook(notebook, OUT / path.name)
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors
    assert (OUT / "pr-curves.png").is_file() or path.name != "train_model.ipynb"
