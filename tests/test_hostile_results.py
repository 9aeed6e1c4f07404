"""Text no database or request takes as it is: lone surrogates (a file name `os.listdir` could
not decode) and NUL (PostgreSQL). Kept exactly in the ledger and the checkpoint; the model
reads `\\uXXXX` escapes; nothing crashes, nothing runs twice."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, ToolMessage

from graphloop.graph import (
    LoopContext,
    ModelConfig,
    Orchestrator,
    compile_graph,
    exact_text,
    open_ledger,
    open_saver,
)
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import CALLS

HOSTILE = "files: " + os.fsdecode(b"caf\xe9.txt") + ", nul\x00here"
"""What a tool may return: a lone surrogate (U+DCE9) and a NUL."""
SHOWN = "files: caf\\udce9.txt, nul\\u0000here"
"""What the model reads of it."""


@pytest.fixture
def db(any_db: Path | str) -> Path | str:
    return any_db


def list_dir(path: str) -> str:
    """List a folder."""
    CALLS.append(("list_dir", {"path": path}))
    return HOSTILE


def count(path: str) -> str:
    """Count the entries of a folder."""
    CALLS.append(("count", {"path": path}))
    return "3 entries"


def open_file(path: str) -> str:
    """Open a file."""
    CALLS.append(("open_file", {"path": path}))
    raise FileNotFoundError(f"no such file: {os.fsdecode(b'caf' + bytes([0xE9]))}\x00")


def saved_tool_messages(db: Path | str, thread_id: str) -> list[ToolMessage]:
    """The tool messages of a thread, as its checkpoint holds them (read by a new saver)."""
    with open_saver(db) as saver:
        values = compile_graph(saver).get_state({"configurable": {"thread_id": thread_id}}).values
    return [m for m in values["messages"] if isinstance(m, ToolMessage)]


def tool_contents(server: ScriptedServer, index: int) -> list[str]:
    return [m["content"] for m in server.requests[index].messages if m["role"] == "tool"]


def test_a_result_with_a_lone_surrogate_and_nul_is_kept_exactly_and_read_as_escapes(
    server: ScriptedServer, model: ModelConfig, db: Path | str
) -> None:
    server.add(reply(None, tool_call("list_dir", path="/srv")), reply("Two odd names."))
    result = Orchestrator([list_dir], db=db, models=[model]).run_sync("list /srv")
    assert result.response == "Two odd names." and CALLS == [("list_dir", {"path": "/srv"})]
    assert tool_contents(server, 1) == [SHOWN]
    [saved] = saved_tool_messages(db, result.thread_id)
    assert saved.content == SHOWN and exact_text(saved) == HOSTILE
    [row] = Orchestrator(db=db).approvals.tool_calls(result.thread_id)
    assert row["status"] == "success" and row["result_chars"] == len(HOSTILE)


def test_a_tool_error_with_hostile_characters_reaches_the_model_as_text(
    server: ScriptedServer, model: ModelConfig, db: Path | str
) -> None:
    server.add(reply(None, tool_call("open_file", path="x")), reply("It is missing."))
    result = Orchestrator([open_file], db=db, models=[model]).run_sync("open x")
    assert result.response == "It is missing." and len(CALLS) == 1
    assert tool_contents(server, 1) == ["Tool error: no such file: caf\\udce9\\u0000"]
    [saved] = saved_tool_messages(db, result.thread_id)
    assert exact_text(saved) == "Tool error: no such file: caf\udce9\x00"


def test_the_ledger_keeps_any_text_exactly(db: Path | str) -> None:
    texts = [HOSTILE, "\ue000graphloop-json:\"x\"", "plain café", ""]
    with open_ledger(db) as ledger:
        for n, text in enumerate(texts):
            entry = call_row("t", f"c{n}", "list_dir", {"path": text})
            assert ledger.claim_call(entry) is None
            ledger.finish_call("t", f"c{n}", "success", duration_ms=1.0, result=text)
        assert [ledger.result("t", f"c{n}") for n in range(len(texts))] == texts
        assert [r["args"]["path"] for r in ledger.tool_calls("t")] == texts


def test_a_result_replayed_after_a_crash_reads_as_the_first_time(
    server: ScriptedServer, model: ModelConfig, db: Path | str
) -> None:
    server.add(reply(None, tool_call("list_dir", path="/srv")), reply("Two odd names."))
    context = LoopContext.create(models=[model], tools=[list_dir])
    config: Any = {"configurable": {"thread_id": "crashed"}}
    with open_saver(db) as saver, open_ledger(db) as ledger:
        graph = compile_graph(saver)
        ctx = replace(context, ledger=ledger)
        graph.invoke({"messages": [HumanMessage("list /srv")]}, config, context=ctx, interrupt_before=["run_tool"])
        # what run_tool wrote before the process died, ahead of the checkpoint: claim, result
        assert ledger.claim_call(call_row("crashed", "call_1_0", "list_dir", {"path": "/srv"})) is None
        ledger.finish_call("crashed", "call_1_0", "success", duration_ms=1.0, result=HOSTILE)
        out = graph.invoke(None, config, context=ctx)
    assert CALLS == []  # replayed, not run again
    assert tool_contents(server, 1) == [SHOWN]
    [replayed] = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert replayed.content == SHOWN and exact_text(replayed) == HOSTILE


def test_arguments_with_nul_from_the_model_run_and_are_audited_exactly(
    server: ScriptedServer, model: ModelConfig, db: Path | str
) -> None:
    """Already right before this change (JSON escapes NUL); kept so it stays right."""
    server.add(reply(None, tool_call("count", '{"path": "/srv\\u0000x"}')), reply("Counted."))
    result = Orchestrator([count], db=db, models=[model]).run_sync("count")
    assert result.response == "Counted." and CALLS == [("count", {"path": "/srv\x00x"})]
    [row] = Orchestrator(db=db).approvals.tool_calls(result.thread_id)
    assert row["args"] == {"path": "/srv\x00x"}


def test_arguments_with_a_lone_surrogate_are_refused_and_the_next_request_is_valid(
    server: ScriptedServer, model: ModelConfig, db: Path | str
) -> None:
    """The checkpoint cannot keep a lone surrogate exactly (langgraph writes '?'), so the call
    could run with other arguments after a resume: it is not run, and the model is told."""
    server.add(reply(None, tool_call("list_dir", '{"path": "caf\\udce9"}')), reply("I cannot."))
    result = Orchestrator([list_dir], db=db, models=[model]).run_sync("list")
    assert result.response == "I cannot." and CALLS == []
    sent = server.requests[1].messages
    assert json.loads(sent[-2]["tool_calls"][0]["function"]["arguments"]) == {"path": "caf\udce9"}
    assert sent[-1]["content"].startswith("Error: your call to 'list_dir' was not run: its arguments "
                                          "hold \\udce9, half of a UTF-16 surrogate pair")
    [row] = Orchestrator(db=db).approvals.tool_calls(result.thread_id)
    assert row["status"] == "refused" and row["args"] == {"path": "caf\udce9"}


@pytest.mark.postgres
def test_an_unknown_tool_name_with_nul_is_refused_and_audited_on_postgres(
    server: ScriptedServer, model: ModelConfig, postgres_db: str
) -> None:
    db = postgres_db
    server.add(reply(None, tool_call("list\x00dir", path="/srv")), reply("No such tool."))
    result = Orchestrator([list_dir], db=db, models=[model]).run_sync("list")
    assert result.response == "No such tool." and CALLS == []
    assert tool_contents(server, 1)[0].startswith("Error: unknown tool 'list\\x00dir'.")
    [row] = Orchestrator(db=db).approvals.tool_calls(result.thread_id)
    assert row["tool"] == "list\x00dir" and row["status"] == "refused"


def call_row(thread_id: str, call_id: str, tool: str, args: dict[str, object]) -> Any:
    return {"thread_id": thread_id, "call_id": call_id, "round": 1, "tool": tool, "args": args,
            "status": "running", "started_at": "2026-01-01T00:00:00+00:00", "duration_ms": None,
            "model": "primary", "user_id": None, "user_role": "user", "result_chars": None}
