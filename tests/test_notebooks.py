"""Every notebook runs offline from top to bottom without a cell error."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("interrupt_for_confirm" in str(o) for o in outputs)


def test_the_exploration_notebook_draws_extends_and_charts(tmp_path: Path) -> None:
    notebook = nbformat.read(Path(__file__).parents[1] / "notebooks" / "explore_graph.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [str(o) for cell in notebook.cells for o in cell.get("outputs", [])]
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the offline PNG of the graph, and the tokens chart
    assert any("| execute_tools |" in o for o in outputs)  # the ASCII drawing
    assert any("call_model -.-> guardrail;" in o for o in outputs)  # redrawn with the branch
    assert any('"action_requests"' in o for o in outputs)  # the interrupt payload
    assert any("| step | next | messages |" in o for o in outputs)  # the state history table
    assert (tmp_path / "graph.png").read_bytes()[:4] == b"\x89PNG"


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS
