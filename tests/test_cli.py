"""The `graphloop` command: every subcommand through typer's runner, and real processes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from graphloop.graph import Approvals, UnknownThreadError, compile_graph, db_label
from graphloop.graph.cli import app
from graphloop.graph.settings import Flags
from graphloop.graph.testing import ScriptedServer, error, reply, tool_call

from conftest import CALLS, SECRET, stored_bytes

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
    assert db.exists() and b"sk-demo-not-stored" not in stored_bytes(db)


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
    [thread] = re.findall(r"thread (\w+): answer it with `graphloop approve \1[ `]", result.output)
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
    messages, calls = result.output.split("model calls")
    rows = [line for line in messages.splitlines() if re.match(r"^│ \d", line)]
    assert [row.split("│")[2].strip() for row in rows] == ["system", "human", "ai", "tool"]
    assert 'add({"a": 1, "b": 2})' in result.output
    # the strict server streams nothing with tools (as llama-cpp-python): the turn is asked again
    # without streaming, then the model phrases the confirmation question
    assert [[cell.strip() for cell in line.split("│")[3:5]] for line in calls.splitlines()
            if re.match(r"^│ \d", line)] == [["turn", "retried"], ["turn", "answered"], ["question", "answered"]]


def test_errors_are_one_line_and_debug_shows_the_traceback(server: ScriptedServer, db: Path) -> None:
    server.add(reply("hi"))
    assert invoke("run", "hi", *TOOL_ARGS, "--db", str(db), server=server).exit_code == 0
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


# -- issue 12: the gate holds on every way in --

def asked(server: ScriptedServer, db: Path, input: str, *, then: str) -> tuple[Result, str]:
    """Run to the gate on delete_file, answer with `input`, the model's last reply `then`;
    the result and the thread's id."""
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"), reply(then))
    result = invoke("run", "delete", *TOOL_ARGS, "--db", str(db), server=server, input=input)
    [entry] = Approvals(db).decisions()
    return result, entry["thread_id"]


def test_the_gate_asks_again_for_anything_but_approve_edit_or_reject(server: ScriptedServer, db: Path) -> None:
    result, thread = asked(server, db, "no\nx\ndeny\nn\n  Reject \n\n", then="Kept /tmp/x.")
    assert result.exit_code == 0, result.output
    assert result.output.count("[r]eject?") == 5
    for typed in ("no", "x", "deny", "n"):
        assert f"Error: {typed!r} is not an answer here; type a (approve), e (edit) or r (reject)" in result.output
    assert CALLS == []
    assert [d["decision"] for d in Approvals(db).decisions(thread)] == ["reject"]


def test_the_gate_takes_a_and_approve_in_any_case(server: ScriptedServer, db: Path) -> None:
    result, _ = asked(server, db, " APPROVE \n", then="Deleted /tmp/x.")
    assert result.exit_code == 0, result.output
    assert CALLS == [("delete_file", {"path": "/tmp/x"})]


def test_an_edit_asks_again_until_the_arguments_are_a_json_object(server: ScriptedServer, db: Path) -> None:
    result, _ = asked(server, db, 'E\n{"path": \n[1]\n{"path": "/tmp/z"}\n', then="Deleted /tmp/z.")
    assert result.exit_code == 0, result.output
    assert "Error: not JSON (Expecting value at column 10); type a JSON object" in result.output
    assert "Error: the arguments must be a JSON object {...}, not a list" in result.output
    assert CALLS == [("delete_file", {"path": "/tmp/z"})] and "Traceback" not in result.output


def test_the_gate_offers_only_the_decisions_the_tool_allows(server: ScriptedServer, db: Path, tmp_path: Path) -> None:
    config = tmp_path / "graphloop.toml"
    config.write_text('tools = ["conftest:TOOLS"]\nconfirm_required = ["delete_file"]\n\n'
                      '[allowed_decisions]\ndelete_file = ["approve", "reject"]\n')
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"), reply("Kept."))
    result = invoke("run", "delete", "--config", str(config), "--db", str(db), "--model", "scripted",
                    server=server, input="e\nedit\nr\n\n")
    assert result.exit_code == 0, result.output
    assert "  [a]pprove or [r]eject? [a]:" in result.output
    assert "Error: 'edit' is not an answer here; type a (approve) or r (reject)" in result.output
    assert [d["decision"] for d in Approvals(db).decisions()] == ["reject"] and CALLS == []


def test_an_edit_that_does_not_fit_the_tool_is_asked_again_naming_the_field(server: ScriptedServer, db: Path) -> None:
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"),
               reply("Deleted /tmp/y."))
    result = invoke("run", "delete", *TOOL_ARGS, "--db", str(db), server=server,
                    input='e\n{"nope": 1}\n{"path": "/tmp/y"}\n')
    assert result.exit_code == 0, result.output
    assert "the arguments do not fit 'delete_file': ['nope'] not among its parameters ['path']" in result.output
    assert CALLS == [("delete_file", {"path": "/tmp/y"})]
    [decision] = Approvals(db).decisions()
    assert decision["decision"] == "edit"


def test_the_end_of_input_at_the_gate_leaves_the_call_waiting(server: ScriptedServer, db: Path) -> None:
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"))
    result = invoke("run", "delete", *TOOL_ARGS, "--db", str(db), server=server, input="")
    assert result.exit_code == 1
    [entry] = Approvals(db).pending()
    thread = entry["thread_id"]
    assert "no answer: nothing was decided\nstill waiting: May I delete /tmp/x?" in result.output
    assert f"thread {thread}: answer it with `graphloop approve {thread} --db {db} --model scripted " in result.output
    assert Approvals(db).decisions() == [] and CALLS == []


def test_the_waiting_hint_is_a_command_that_continues_the_thread(server: ScriptedServer, tmp_path: Path) -> None:
    config, db = tmp_path / "my.toml", tmp_path / "elsewhere.db"
    config.write_text('tools = ["conftest:TOOLS"]\nconfirm_required = ["delete_file"]\n')
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"),
               reply("Deleted /tmp/x."))
    result = invoke("run", "delete", "--config", str(config), "--db", str(db), "--model", "scripted",
                    "--no-input", server=server)
    found = re.search(r"thread (\w+): answer it with `(graphloop approve \1 [^`]*)`", result.output)
    assert found is not None, result.output
    assert found.group(2) == f"graphloop approve {found.group(1)} --config {config} --db {db} --model scripted"
    approved = invoke(*shlex.split(found.group(2))[1:], server=server)
    assert approved.exit_code == 0, approved.output
    assert CALLS == [("delete_file", {"path": "/tmp/x"})] and "Deleted /tmp/x." in approved.output


def test_thread_ids_are_printed_whole_at_80_columns(server: ScriptedServer, db: Path) -> None:
    server.add(reply(None, tool_call("delete_file", path="/tmp/" + "x" * 60)), reply("May I delete it?"))
    ran = invoke("run", "delete", *TOOL_ARGS, "--db", str(db), "--no-input", server=server, COLUMNS="80")
    [entry] = Approvals(db).pending()
    thread = entry["thread_id"]
    assert len(thread) == 20 and f"thread {thread}: answer it with `graphloop approve {thread} " in ran.output
    listed = invoke("pending", "--db", str(db), server=server, COLUMNS="80")
    assert listed.exit_code == 0 and f"│ {thread} │" in listed.output
    assert max(len(line) for line in listed.output.splitlines()) <= 80


def test_pending_and_history_print_json(server: ScriptedServer, db: Path) -> None:
    thread = gated(server, db)
    [entry] = json.loads(invoke("pending", "--db", str(db), "--json", server=server).output)
    assert entry["thread_id"] == thread and entry["calls"][0]["args"] == {"path": "/tmp/x"}
    messages = json.loads(invoke("history", thread, "--db", str(db), "--json", server=server).output)
    assert [m["type"] for m in messages] == ["system", "human", "ai", "tool"]
    assert [(c["name"], c["args"]) for c in messages[2]["tool_calls"]] == [
        ("add", {"a": 1, "b": 2}), ("delete_file", {"path": "/tmp/x"})]
    assert messages[3]["tool_call_id"] == messages[2]["tool_calls"][0]["id"] and messages[3]["content"] == "3"
    assert set(messages[0]) == {"type", "content", "tool_calls", "tool_call_id", "name"}


@pytest.mark.parametrize("command", [["pending"], ["history", "t1"]])
def test_reading_commands_never_create_a_database(server: ScriptedServer, tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "missing" / "x.db"
    result = invoke(*command, "--db", str(db), server=server)
    assert result.exit_code == 1
    assert result.output == (f"error: ConfigurationError: no database at {str(db)!r}; give --db or --config, "
                             "or run a task first\n")
    assert not db.parent.exists()


@pytest.fixture
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tmp_path` as the working directory, not on `sys.path`: the CLI must find modules there itself."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    return tmp_path


def test_tools_load_from_modules_in_the_working_directory(server: ScriptedServer, work_dir: Path) -> None:
    (work_dir / "cwd_tools_12.py").write_text('def shout(text: str) -> str:\n    """Shout."""\n    return text.upper()\n')
    server.add(reply("ok"))
    result = invoke("run", "hi", "--tools", "cwd_tools_12:shout", "--model", "m", server=server)
    assert result.exit_code == 0, result.output
    assert server.requests[0].tool_names == ["shout"]


def test_an_error_never_shows_a_key_held_in_the_environment(server: ScriptedServer, work_dir: Path) -> None:
    """A gateway's hex key (not shaped like `sk-…`) echoed by a tools module's import error."""
    (work_dir / "echo_key_7.py").write_text('import os\nraise RuntimeError("bad key " + os.environ["GATEWAY"])\n')
    key = "0123456789abcdef0123"
    for flags in (["--api-key-env", "GATEWAY"], []):  # named for the model, or only in the environment
        env = {"GATEWAY": key} if flags else {"GATEWAY_TOKEN": key, "GATEWAY": key}
        result = invoke("run", "hi", "--tools", "echo_key_7:TOOLS", "--model", "m", *flags, server=server, **env)
        assert result.exit_code == 1 and "bad key ****" in result.output and key not in result.output


def failing_config(tmp_path: Path, server: ScriptedServer) -> Path:
    """A graphloop.toml whose model fails at once (no retries), with the tools and the gate."""
    config = tmp_path / "graphloop.toml"
    config.write_text(f'db = "{tmp_path / "t.db"}"\ntools = ["conftest:TOOLS"]\nconfirm_required = ["delete_file"]\n'
                      f'[[models]]\nlabel = "primary"\napi_url = "{server.url}"\nmodel_name = "scripted"\n'
                      'context_k = 16\nmax_retries = 0\n')
    return config


def resume_command(output: str, config: Path) -> tuple[str, list[str]]:
    """The thread id and the `graphloop resume` command a failure printed."""
    found = re.search(r"thread (\w+) stopped; continue it with `graphloop (resume \1 [^`]*)`", output)
    assert found is not None, output
    assert found.group(2) == f"resume {found.group(1)} --config {config}"
    return found.group(1), shlex.split(found.group(2))


def test_one_call_per_pause_in_graphloop_toml_pauses_once_per_gated_call(server: ScriptedServer, tmp_path: Path) -> None:
    config = failing_config(tmp_path, server)
    config.write_text("one_call_per_pause = true\n" + config.read_text())
    server.add(reply(None, tool_call("delete_file", path="/a"), tool_call("delete_file", path="/b")),
               reply("May I delete /a?"))
    result = invoke("run", "delete both", "--config", str(config), "--no-input", server=server)
    assert result.exit_code == 0, result.output
    [entry] = Approvals(tmp_path / "t.db").pending()
    assert [c["args"] for c in entry["calls"]] == [{"path": "/a"}]
    config.write_text(config.read_text().replace("one_call_per_pause = true", 'one_call_per_pause = "yes"'))
    refused = invoke("pending", "--config", str(config), server=server)
    assert refused.exit_code == 1 and 'one_call_per_pause = \'yes\' should be true or false' in refused.output


def test_a_model_failure_names_the_thread_and_resume_continues_it(server: ScriptedServer, tmp_path: Path) -> None:
    config = failing_config(tmp_path, server)
    server.add(error(500, "the GPU is on fire"))
    result = invoke("run", "hi", "--config", str(config), server=server)
    assert result.exit_code == 1
    assert result.output.startswith("error: ModelUnavailableError: ") and "Traceback" not in result.output
    thread, command = resume_command(result.output, config)
    server.add(reply("Recovered."))
    resumed = invoke(*command, server=server)
    assert resumed.exit_code == 0, resumed.output
    assert "Recovered." in resumed.output
    assert [m["content"] for m in json.loads(invoke("history", thread, "--config", str(config), "--json",
                                                    server=server).output)][-2:] == ["hi", "Recovered."]


def test_a_model_failure_after_approve_is_resumed_without_running_the_call_again(
    server: ScriptedServer, tmp_path: Path
) -> None:
    config = failing_config(tmp_path, server)
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"))
    ran = invoke("run", "delete", "--config", str(config), "--no-input", server=server)
    [entry] = Approvals(tmp_path / "t.db").pending()
    server.add(error(500))
    approved = invoke("approve", entry["thread_id"], "--config", str(config), server=server)
    assert ran.exit_code == 0 and approved.exit_code == 1, approved.output
    thread, command = resume_command(approved.output, config)
    server.add(reply("Deleted /tmp/x."))
    resumed = invoke(*command, server=server)
    assert resumed.exit_code == 0, resumed.output
    assert thread == entry["thread_id"] and CALLS == [("delete_file", {"path": "/tmp/x"})]


def test_resume_refuses_a_thread_waiting_for_a_decision(server: ScriptedServer, db: Path) -> None:
    thread = gated(server, db)
    result = invoke("resume", thread, *TOOL_ARGS[:2], "--model", "scripted", "--db", str(db), server=server)
    assert result.exit_code == 1 and result.output.startswith("error: InvalidDecisionError: ")
    assert [e["thread_id"] for e in Approvals(db).pending()] == [thread]


def test_approve_says_the_thread_keeps_its_gate(server: ScriptedServer) -> None:
    result = invoke("approve", "--help", server=server, COLUMNS="200")
    assert "the thread keeps the gate it started with, this can only add to it" in result.output


def test_approve_without_confirm_keeps_the_gate_the_thread_started_with(server: ScriptedServer, db: Path) -> None:
    thread = gated(server, db)
    server.add(reply(None, tool_call("delete_file", path="/tmp/y")), reply("May I delete /tmp/y?"))
    result = invoke("approve", thread, "--tools", "conftest:TOOLS", "--model", "scripted", "--db", str(db),
                    server=server)
    assert result.exit_code == 0, result.output
    assert "waiting: May I delete /tmp/y?" in result.output
    assert CALLS == [("add", {"a": 1, "b": 2}), ("delete_file", {"path": "/tmp/x"})]
    assert [e["calls"][0]["args"] for e in Approvals(db).pending()] == [{"path": "/tmp/y"}]


def test_approve_refuses_a_thread_whose_tools_are_not_loaded(server: ScriptedServer, db: Path) -> None:
    thread = gated(server, db)
    result = invoke("approve", thread, "--model", "scripted", "--db", str(db), server=server)
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert "delete_file" in result.output
    assert Approvals(db).decisions(thread) == [] and CALLS == [("add", {"a": 1, "b": 2})]
    assert [e["thread_id"] for e in Approvals(db).pending()] == [thread]


@pytest.mark.parametrize("command", ["reject", "resume"])
def test_reject_and_resume_refuse_a_thread_whose_tools_are_not_loaded(
    server: ScriptedServer, db: Path, command: str
) -> None:
    thread = gated(server, db)
    result = invoke(command, thread, "--model", "scripted", "--db", str(db), server=server)
    assert result.exit_code == 1
    assert result.output.startswith("error: MissingToolsError: ") and len(result.output.strip().splitlines()) == 1
    assert "'add', 'delete_file'" in result.output and "Nothing was decided or run" in result.output
    assert Approvals(db).decisions(thread) == [] and CALLS == [("add", {"a": 1, "b": 2})]
    assert [e["thread_id"] for e in Approvals(db).pending()] == [thread]


def test_any_error_is_one_line_without_a_traceback(server: ScriptedServer, tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("just text, not a database\n" * 100)
    result = invoke("pending", "--db", str(not_a_db), server=server)
    assert result.exit_code == 1
    assert result.output.startswith(f"error: UnusableDatabaseError: db {str(not_a_db)!r} is not a SQLite database")
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_key_inside_a_url_is_refused_without_being_shown(server: ScriptedServer, db: Path) -> None:
    url = server.url.replace("http://", "http://ann:sk-in-the-url-123@")
    result = invoke("run", "hi", "--model", "scripted", "--base-url", url, "--db", str(db), server=server)
    assert result.exit_code == 1 and "api_url carries a secret" in result.output
    assert "sk-in-the-url-123" not in result.output and not db.exists()


def test_a_database_urls_password_is_not_shown_in_hints_or_errors() -> None:
    url = "postgresql://ann:pa@ss/w0rd@db.internal:5432/x?sslpassword=hush&application_name=gl"
    assert db_label(url) == "postgresql://ann:****@db.internal:5432/x?sslpassword=****&application_name=gl"
    assert "pa@ss" not in Flags(db=url).again() and "hush" not in Flags(db=url).again()


def test_a_config_key_of_the_wrong_type_is_named_with_its_right_form(server: ScriptedServer, tmp_path: Path) -> None:
    (tmp_path / "graphloop.toml").write_text("models = 5\n")
    result = invoke("run", "hi", "--config", str(tmp_path / "graphloop.toml"), server=server)
    assert result.exit_code == 1
    assert "models = 5 should be [[models]] tables, one per model" in result.output
