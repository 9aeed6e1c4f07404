"""The Orchestrator facade: run, pause, resume (also from another process), wrong resumes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from graphloop.graph import (
    ConfigurationError,
    InvalidDecisionError,
    LoopContext,
    ModelConfig,
    ModelUnavailableError,
    NotPausedError,
    Orchestrator,
    OrchestratorResult,
    ThreadPausedError,
    UnknownThreadError,
    compile_graph,
)
from graphloop.graph.testing import ScriptedServer, error, reply, tool_call

from conftest import CALLS, SECRET, TOOLS, stored_bytes

HERE = Path(__file__).parent
QUESTION = "Shall I delete /tmp/x?"


@pytest.fixture
def db(any_db: Path | str) -> Path | str:
    return any_db


@pytest.fixture
def orch(model: ModelConfig, db: Path) -> Orchestrator:
    return Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model],
                        roles={"user": ["add", "get_weather", "delete_file"], "admin": "*"})


def paused(server: ScriptedServer, orch: Orchestrator) -> OrchestratorResult:
    server.add(reply(None, tool_call("get_weather", city="Rome"), tool_call("delete_file", path="/tmp/x")),
               reply(QUESTION))
    return orch.run_sync("weather, then delete", system_prompt="You are careful.")


def test_run_returns_the_question_and_a_checkpoint_while_paused(server: ScriptedServer, orch: Orchestrator) -> None:
    result = paused(server, orch)
    assert result.response == QUESTION
    assert result.backend == "primary"
    assert result.tool_calls == [
        {"tool": "get_weather", "args": {"city": "Rome"}, "result": "Rome: sunny"},
        {"tool": "delete_file", "args": {"path": "/tmp/x"}, "result": "[awaiting confirmation]"},
    ]
    assert result.checkpoint is not None
    assert result.checkpoint.thread_id == result.thread_id
    assert result.checkpoint.question == QUESTION
    assert result.checkpoint.request["action_requests"][0]["name"] == "delete_file"


def test_first_request_has_system_prompt_instruction_and_last_six_session_messages(
    server: ScriptedServer, orch: Orchestrator
) -> None:
    server.add(reply("hi"))
    session = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(8)]
    orch.run_sync("now", system_prompt="Persona.", session_messages=session)
    sent = server.requests[0].messages
    assert sent[0]["role"] == "system"
    assert sent[0]["content"].startswith("Persona.\n\nYou have access to tools.")
    assert [m["content"] for m in sent[1:]] == ["m2", "m3", "m4", "m5", "m6", "m7", "now"]


def test_session_messages_may_be_langchain_messages_and_anything_else_is_named(
    server: ScriptedServer, orch: Orchestrator
) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    server.add(reply("hi"))
    orch.run_sync("now", session_messages=[HumanMessage("before"), AIMessage("noted")])
    assert [(m["role"], m["content"]) for m in server.requests[0].messages[1:]] == [
        ("user", "before"), ("assistant", "noted"), ("user", "now")]
    for bad in ("just text", ToolMessage("x", tool_call_id="c1"), {"content": "no role"}):
        with pytest.raises(ConfigurationError, match="session_messages item .* is not a message"):
            orch.run_sync("now", session_messages=[bad])  # type: ignore[list-item]


def test_resume_confirmed_runs_the_call_and_answers(server: ScriptedServer, orch: Orchestrator) -> None:
    result = paused(server, orch)
    server.add(reply("Deleted."))
    done = orch.resume_sync(result.checkpoint, confirmed=True)  # type: ignore[arg-type]
    assert done.checkpoint is None and done.response == "Deleted."
    assert done.tool_calls[1] == {"tool": "delete_file", "args": {"path": "/tmp/x"}, "result": "deleted /tmp/x"}
    assert CALLS[-1] == ("delete_file", {"path": "/tmp/x"})


def test_resume_not_confirmed_rejects_every_pending_call(server: ScriptedServer, orch: Orchestrator) -> None:
    result = paused(server, orch)
    server.add(reply("Not deleted."))
    done = orch.resume_sync(result.thread_id, confirmed=False)
    assert done.tool_calls[1]["result"] == "Action denied by user."
    assert "delete_file" not in [c[0] for c in CALLS]


def test_resume_in_a_second_process_from_the_sqlite_file(server: ScriptedServer, orch: Orchestrator, db: Path) -> None:
    result = paused(server, orch)
    server.add(reply("Deleted, from the other process."))
    edit = [{"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "/tmp/z"}}}]
    child = subprocess.run(
        [sys.executable, str(HERE / "resume_child.py"), str(db), result.thread_id, server.url,
         json.dumps(edit)],
        capture_output=True, text=True, cwd=HERE, timeout=120,
    )
    assert child.returncode == 0, child.stderr
    done = json.loads(child.stdout)
    assert done["response"] == "Deleted, from the other process."
    assert done["checkpoint"] is None
    assert done["tool_calls"][1] == {"tool": "delete_file", "args": {"path": "/tmp/z"},
                                     "result": "deleted /tmp/z"}
    assert server.requests[-1].headers["authorization"] == "Bearer sk-child"
    assert "delete_file" not in [c[0] for c in CALLS]  # it ran in the child, not here


def test_api_key_is_absent_from_every_byte_of_the_database(
    server: ScriptedServer, orch: Orchestrator, db: Path
) -> None:
    result = paused(server, orch)
    server.add(reply("Deleted."))
    orch.resume_sync(result.thread_id, confirmed=True)
    data = stored_bytes(db)
    assert b"weather, then delete" in data  # the scan reads the stored rows
    assert SECRET.encode() not in data
    assert b"SECRET-0123456789" not in data
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_resume_of_an_unknown_thread_is_refused(orch: Orchestrator) -> None:
    with pytest.raises(UnknownThreadError, match=r"no thread 'nope' in the database"):
        orch.resume_sync("nope", confirmed=True)


def test_resume_of_a_finished_thread_is_refused(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(reply("done"))
    result = orch.run_sync("hi")
    with pytest.raises(NotPausedError, match="has finished; nothing to resume"):
        orch.resume_sync(result.thread_id, confirmed=True)


def test_a_checkpoint_from_an_earlier_pause_is_refused(server: ScriptedServer, orch: Orchestrator) -> None:
    first = paused(server, orch)
    server.add(reply(None, tool_call("delete_file", path="/tmp/again")), reply("Again?"))
    second = orch.resume_sync(first.checkpoint, confirmed=True)  # type: ignore[arg-type]
    assert second.checkpoint is not None
    with pytest.raises(InvalidDecisionError, match="answers pause"):
        orch.resume_sync(first.checkpoint, confirmed=True)  # type: ignore[arg-type]
    server.add(reply("Deleted again."))
    assert orch.resume_sync(second.checkpoint, confirmed=True).response == "Deleted again."


def test_a_new_task_at_the_gate_answers_the_waiting_call_as_not_run(server: ScriptedServer,
                                                                     orch: Orchestrator) -> None:
    result = paused(server, orch)
    server.add(reply("Fine, nothing deleted."))
    assert orch.run_sync("something else", thread_id=result.thread_id).response == "Fine, nothing deleted."
    sent = server.requests[-1].messages
    assert sent[-2]["role"] == "tool" and sent[-2]["content"].startswith("Not run: the user sent a new message")
    assert sent[-1] == {"role": "user", "content": "something else"}
    assert orch.approvals.pending() == [] and ("delete_file", {"path": "/tmp/x"}) not in CALLS
    assert [c["status"] for c in orch.approvals.tool_calls(result.thread_id) if c["tool"] == "delete_file"] == [
        "abandoned"]


def test_a_new_task_on_a_thread_stopped_by_an_error_is_refused(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(error(500))
    with pytest.raises(ModelUnavailableError):
        orch.run_sync("one", thread_id="stopped")
    with pytest.raises(ThreadPausedError, match="resume it first"):
        orch.run_sync("something else", thread_id="stopped")


def test_a_finished_thread_continues_the_conversation(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(reply("first"), reply("second"))
    first = orch.run_sync("one", system_prompt="S")
    orch.run_sync("two", thread_id=first.thread_id, system_prompt="ignored")
    assert [m["content"] for m in server.requests[1].messages][1:] == ["one", "first", "two"]


def test_unknown_role_and_tool_names_are_configuration_errors(orch: Orchestrator) -> None:
    with pytest.raises(ConfigurationError, match=r"user_role='guest' is not a configured role; known roles: \['admin', 'user'\]"):
        orch.run_sync("x", user_role="guest")
    with pytest.raises(ConfigurationError, match=r"tool_list names unknown tools \['ad'\]"):
        orch.run_sync("x", tool_list=["ad"])
    with pytest.raises(ConfigurationError, match=r"confirm_required names unknown tools \['rm'\]"):
        Orchestrator(TOOLS, confirm_required=["rm"])


def test_model_cfg_dict_per_run_overrides_the_default(server: ScriptedServer, db: Path) -> None:
    orch = Orchestrator(TOOLS, db=db)
    server.add(reply("hi"))
    cfg = {"label": "dict-model", "api_url": server.url, "model_name": "scripted",
           "api_key": SECRET, "host_type": "openai", "context_k": 64, "max_retries": 0}
    assert orch.run_sync("hi", model_cfg=cfg).backend == "dict-model"
    with pytest.raises(ConfigurationError, match="no model configured"):
        orch.run_sync("hi")


def test_sync_wrapper_works_inside_a_running_event_loop(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(reply("from inside a loop"))

    async def notebook_cell() -> str:
        return orch.run_sync("hi").response

    assert asyncio.run(notebook_cell()) == "from inside a loop"


def test_a_sync_only_saver_is_refused_with_what_to_pass_instead(model: ModelConfig, sqlite_db: Path) -> None:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    with sqlite3.connect(sqlite_db, check_same_thread=False) as conn:
        orch = Orchestrator(TOOLS, db=SqliteSaver(conn), models=[model])
        with pytest.raises(ConfigurationError, match=r"db=SqliteSaver has no async methods"):
            orch.run_sync("hi")


def test_a_saver_from_open_saver_also_serves_async_runs(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path
) -> None:
    """graphloop's SQLite saver runs its async methods on its own thread, so the saver a sync
    `open_saver` gives serves the Orchestrator and a compiled graph's `ainvoke` alike."""
    from graphloop.graph import open_saver

    with open_saver(sqlite_db) as saver:
        server.add(reply(None, tool_call("read_file", path="a.txt")), reply("Read it."))
        assert Orchestrator(TOOLS, db=saver, models=[model]).run_sync("read a.txt").response == "Read it."
        server.add(reply("Hello."))
        graph = compile_graph(checkpointer=saver)
        config: Any = {"configurable": {"thread_id": "t2"}}
        done = asyncio.run(graph.ainvoke({"messages": [("user", "hi")]}, config,
                                         context=LoopContext.create(models=[model], tools=TOOLS)))
        assert done["messages"][-1].content == "Hello."
    with open_saver(sqlite_db) as saver:  # what the saver's thread wrote is on disk
        assert compile_graph(checkpointer=saver).get_state(config).values["messages"][-1].content == "Hello."


def test_an_in_memory_saver_serves_run_and_resume(server: ScriptedServer, model: ModelConfig) -> None:
    from graphloop.graph import memory_saver

    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=memory_saver(), models=[model])
    result = paused(server, orch)
    server.add(reply("Deleted."))
    assert orch.resume_sync(result.thread_id, confirmed=True).response == "Deleted."


def test_resume_finishes_a_step_whose_results_were_saved_before_its_checkpoint(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path
) -> None:
    """A crash after every tool of a step saved its result, before the step's checkpoint,
    leaves a thread with no next task and no answer. Reproduced by deleting that checkpoint."""
    import sqlite3

    from langchain_core.messages import HumanMessage

    from graphloop.graph import compile_graph, open_saver

    db = sqlite_db
    orch = Orchestrator(TOOLS, db=db, models=[model])
    server.add(reply(None, tool_call("add", a=2, b=2), tool_call("get_weather", city="Oslo")))
    config: Any = {"configurable": {"thread_id": "short"}}
    with open_saver(db) as saver:
        graph = compile_graph(saver)
        graph.invoke({"messages": [HumanMessage("go")]}, config, context=orch.context,
                     interrupt_before=["run_tool"], durability="sync")  # stops after call_model
    with sqlite3.connect(db) as conn:
        [(latest,)] = conn.execute("SELECT checkpoint_id FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1")
        conn.execute("DELETE FROM checkpoints WHERE checkpoint_id = ?", (latest,))
    with open_saver(db) as saver:
        snapshot = compile_graph(saver).get_state(config)
    assert snapshot.next == ()  # looks finished: the results sit in the step's saved writes
    assert snapshot.values["messages"][-1].tool_calls

    server.add(reply("4, and Oslo is sunny"))
    done = orch.resume_sync("short")
    assert done.response == "4, and Oslo is sunny"
    assert [r["result"] for r in done.tool_calls] == ["4", "Oslo: sunny"]
    assert sorted(CALLS, key=lambda c: c[0]) == [("add", {"a": 2, "b": 2}), ("get_weather", {"city": "Oslo"})]  # each once, not run again (run in parallel: any order)


def test_the_savers_thread_ends_with_its_runs(server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    import threading

    server.add(reply(None, tool_call("read_file", path="a.txt")), reply("Read it."))
    assert Orchestrator(TOOLS, db=sqlite_db, models=[model]).run_sync("read a.txt").response == "Read it."
    assert [t.name for t in threading.enumerate() if t.name.startswith("graphloop-saver")] == []


def test_a_new_thread_gets_a_short_random_id(server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    import re

    server.add(reply("one"), reply("two"))
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[model])
    first, second = orch.run_sync("a").thread_id, orch.run_sync("b").thread_id
    assert re.fullmatch(r"[0-9a-f]{20}", first) and re.fullmatch(r"[0-9a-f]{20}", second) and first != second
