"""README.md never lies: its Python runs, its drawing is the graph, CI runs its test command."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from graphloop.graph import compile_graph

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_python_blocks_run_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = blocks("python")
    assert len(code) >= 2
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict[str, object] = {"__name__": "readme"}
        for block in code:
            exec(compile(block, "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    assert "Deleted /tmp/x; Oslo is sunny." in printed
    assert "May I delete /tmp/y?" in printed
    assert "has finished; nothing to resume" in printed
    assert "[('delete_file', 'success', 'ann'), ('delete_file', 'success', 'ann')]" in printed


def test_readme_drawing_is_the_compiled_graph() -> None:
    drawn = compile_graph().get_graph().draw_mermaid()
    edges = {line.strip() for line in drawn.splitlines() if "-->" in line or "-.->" in line}
    [shown] = blocks("mermaid")
    assert {line.strip() for line in shown.splitlines() if "-->" in line or "-.->" in line} == edges


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"^(python -m pytest)\b", blocks("bash")[0], flags=re.M)
    assert command is not None
    assert command.group(1) in (ROOT / ".ci" / "run").read_text()
