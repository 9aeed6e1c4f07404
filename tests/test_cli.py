"""The `graphloop` command: every subcommand through typer's runner, and real processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from graphloop.graph import Approvals, UnknownThreadError, compile_graph
from graphloop.graph.cli import app
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import CALLS, SECRET

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


# -- run, pending, approve, reject, history: through typer's runner and the scripted server --

def invoke(*args: str, server: ScriptedServer, input: str | None = None, **env: str) -> Result:
    environment = {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": SECRET, "COLUMNS": "250",
                   "NO_COLOR": "1", **env}
    return CliRunner().invoke(app, list(args), input=input, env=environment)


TOOL_ARGS = ("--tools", "conftest:TOOLS", "--confirm", "delete_file", "--model", "scripted")


def gated(server: ScriptedServer, db: Path) -> str:
    """Run to the gate with --no-input; the waiting thread's id."""
    server.add(reply(None, tool_call("add", a=1, b=2), tool_call("delete_file", path="/tmp/x")),
               reply("May I delete /tmp/x?"))
    result = invoke("run", "add, then delete", *TOOL_ARGS, "--db", str(db), "--no-input", server=server)
    assert result.exit_code == 0, result.output
    assert "✓ add → 1 chars" in result.output
    assert "waiting: May I delete /tmp/x?" in result.output
    [thread] = re.findall(r"thread (\w+): answer it with `graphloop approve \1`", result.output)
    return thread


def test_run_streams_the_answer_and_exits_zero(server: ScriptedServer, db: Path) -> None:
    server.add(reply("Streaming from the scripted model."))
    result = invoke("run", "hi", *TOOL_ARGS, "--db", str(db), server=server)
    assert result.exit_code == 0, result.output
    assert "Streaming from the scripted model." in result.output
    assert server.requests[0].body["stream"] is True
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_run_takes_the_url_and_the_keys_variable_as_flags(server: ScriptedServer, db: Path) -> None:
    server.add(reply("hello"))
    result = CliRunner().invoke(app, ["run", "hi", "--base-url", server.url, "--model", "m",
                                      "--api-key-env", "MY_KEY", "--db", str(db)],
                                env={"MY_KEY": "sk-mine", "OPENAI_BASE_URL": "", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert server.requests[0].headers["authorization"] == "Bearer sk-mine"
    assert server.requests[0].body["model"] == "m"


def test_pending_lists_what_run_left_waiting(server: ScriptedServer, db: Path) -> None:
    thread = gated(server, db)
    result = invoke("pending", "--db", str(db), server=server)
    assert result.exit_code == 0, result.output
    assert thread in result.output and "May I delete /tmp/x?" in result.output
    assert 'delete_file({"path": "/tmp/x"})' in result.output


def test_approve_runs_the_waiting_call_and_records_who(server: ScriptedServer, db: Path) -> None:
    thread = gated(server, db)
    server.add(reply("Deleted /tmp/x."))
    result = invoke("approve", thread, "--by", "ann", *TOOL_ARGS, "--db", str(db), server=server)
    assert result.exit_code == 0, result.output
    assert "✓ delete_file → 14 chars" in result.output and "Deleted /tmp/x." in result.output
    assert Approvals(db).decisions(thread)[0]["decided_by"] == "ann"
    assert invoke("pending", "--db", str(db), server=server).output.strip() == "nothing is waiting"


def test_reject_with_a_message_tells_the_model(server: ScriptedServer, db: Path) -> None:
    thread = gated(server, db)
    server.add(reply("Understood, kept it."))
    result = invoke("reject", thread, "--message", "keep it", *TOOL_ARGS, "--db", str(db), server=server)
    assert result.exit_code == 0, result.output
    assert server.requests[-1].messages[-1]["content"] == "Action denied by user. keep it"
    assert ("delete_file", {"path": "/tmp/x"}) not in CALLS


def test_run_asks_at_the_gate_and_an_edit_runs_the_edited_call(server: ScriptedServer, db: Path) -> None:
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"),
               reply("Deleted /tmp/z instead."))
    result = invoke("run", "delete", *TOOL_ARGS, "--db", str(db), server=server,
                    input='e\n{"path": "/tmp/z"}\n')
    assert result.exit_code == 0, result.output
    assert 'delete_file({"path": "/tmp/x"})' in result.output
    assert CALLS == [("delete_file", {"path": "/tmp/z"})]
    assert "Deleted /tmp/z instead." in result.output


def test_history_shows_the_thread_as_a_table(server: ScriptedServer, db: Path) -> None:
    thread = gated(server, db)
    result = invoke("history", thread, "--db", str(db), server=server)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if re.match(r"^│ \d", line)]
    assert [row.split("│")[2].strip() for row in rows] == ["system", "human", "ai", "tool"]
    assert 'add({"a": 1, "b": 2})' in result.output


def test_errors_are_one_line_and_debug_shows_the_traceback(server: ScriptedServer, db: Path) -> None:
    result = invoke("approve", "nope", *TOOL_ARGS, "--db", str(db), server=server)
    assert result.exit_code == 1
    assert result.output.startswith("error: UnknownThreadError: no thread 'nope' in the database")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    debug = invoke("--debug", "approve", "nope", *TOOL_ARGS, "--db", str(db), server=server)
    assert isinstance(debug.exception, UnknownThreadError)


def test_missing_model_settings_say_what_to_set(server: ScriptedServer, db: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "hi"], env={"OPENAI_BASE_URL": "", "OPENAI_MODEL": ""})
    assert result.exit_code == 1
    assert "no model configured: add [[models]] to graphloop.toml, or set OPENAI_BASE_URL (or pass --base-url)" in result.output


def test_models_come_from_graphloop_toml_with_keys_from_the_environment(
    server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "graphloop.toml").write_text(
        'db = "from-toml.db"\ntools = ["conftest:TOOLS"]\nconfirm_required = ["delete_file"]\n\n'
        f'[[models]]\nlabel = "primary"\napi_url = "{server.url}"\nmodel_name = "scripted"\n'
        'context_k = 16\napi_key_env = "MY_KEY"\nmax_retries = 0\n')
    server.add(reply("from the toml model"))
    result = CliRunner().invoke(app, ["run", "hi"], env={"MY_KEY": "sk-from-env", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"
    assert (tmp_path / "from-toml.db").exists()
    (tmp_path / "graphloop.toml").write_text('[[models]]\napi_url = "x"\nmodel_name = "m"\napi_key = "sk-x"\n')
    result = CliRunner().invoke(app, ["run", "hi"])
    assert result.exit_code == 1
    assert "put the key in an environment variable and name it with api_key_env" in result.output


def test_graph_draws_ascii_and_an_offline_png(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["graph", "--format", "ascii"])
    assert result.exit_code == 0 and "| execute_tools |" in result.output
    png = tmp_path / "graph.png"
    result = CliRunner().invoke(app, ["graph", "--format", "png", "--output", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_real_graphloop_process_runs_to_the_gate(server: ScriptedServer, db: Path) -> None:
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"))
    env = {"PATH": "/usr/bin:/bin", "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": SECRET,
           "PYTHONPATH": str(Path(__file__).parent), "COLUMNS": "200", "NO_COLOR": "1"}
    cli = Path(sys.executable).parent / "graphloop"
    result = subprocess.run([str(cli), "run", "delete", *TOOL_ARGS, "--db", str(db), "--no-input"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "waiting: May I delete /tmp/x?" in result.stdout
    assert [e["question"] for e in Approvals(db).pending()] == ["May I delete /tmp/x?"]


def test_demo_through_typers_runner(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--db", str(tmp_path / "demo.db")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "2. resume (a new process, same SQLite file): approve" in result.output
    assert "answer: Done." in result.output
