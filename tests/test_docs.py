"""README.md never lies: its Python and commands run, its drawing is the graph, CI runs its test command."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphloop.graph import compile_graph
from graphloop.graph.cli import app
from graphloop.graph.testing import ScriptedServer, reply, tool_call

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


def test_readme_command_line_quickstart_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [block] = blocks("console")
    commands = [shlex.split(line[2:]) for line in block.splitlines() if line.startswith("$ graphloop ")]
    assert [c[1] for c in commands] == ["run", "pending", "approve", "history", "graph"]
    monkeypatch.chdir(tmp_path)
    with ScriptedServer([
        reply(None, tool_call("get_weather", city="Paris"),
              tool_call("send_email", to="ann@example.com", subject="Paris", body="Sunny")),
        reply("May I email Ann?"), reply("Emailed Ann."),
    ]) as server:
        env = {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-test", "COLUMNS": "200", "NO_COLOR": "1"}
        thread = ""
        for command in commands:
            args = [thread if a == "THREAD" else a for a in command[1:]]
            result = CliRunner().invoke(app, args, env=env)
            assert result.exit_code == 0, (command, result.output)
            found = re.search(r"thread (\w+): answer it with", result.output)
            thread = found.group(1) if found else thread
        assert "Emailed Ann." in CliRunner().invoke(app, ["history", thread], env=env).output
        server.assert_all_used()


def test_readme_shows_the_offline_png_of_the_graph() -> None:
    assert "](docs/graph.png)" in README
    assert (ROOT / "docs" / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
