"""The `graphloop` command: the drawing, and the offline demo end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from graphloop.graph import compile_graph
from graphloop.graph.cli import app

SNAPSHOT = Path(__file__).parent / "snapshots" / "graph.mmd"


def test_the_drawn_graph_matches_the_snapshot() -> None:
    assert compile_graph().get_graph().draw_mermaid() == SNAPSHOT.read_text()


def test_graph_command_prints_the_mermaid_drawing() -> None:
    result = CliRunner().invoke(app, ["graph", "--format", "mermaid"])
    assert result.exit_code == 0
    assert "execute_tools -.-> ask_confirmation;" in result.output
    assert "interrupt_for_confirm --> execute_tools;" in result.output


def test_demo_pauses_then_resumes_in_a_new_process(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = subprocess.run([sys.executable, "-m", "graphloop.graph.cli", "demo", "--db", str(db)],
                            capture_output=True, text=True, timeout=180,
                            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "question: I checked the weather in Paris (sunny, 21 °C). May I email it" in out
    assert "2. resume (a new process, same SQLite file): approve" in out
    assert ("answer: Done. (1) Paris: sunny, 21 °C, light wind from the west. "
            "(2) Email to ann@example.com sent (subject 'Weather in Paris', 39 chars).") in out
    assert db.exists() and b"sk-demo-not-stored" not in db.read_bytes()
