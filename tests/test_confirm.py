"""The confirmation gate through the compiled graph: payload, approve, edit, reject."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.errors import is_invalid_resume
from langgraph.types import Command
from pydantic import ValidationError

from graphloop.graph import LoopContext, compile_graph, memory_saver
from graphloop.graph.testing import ScriptedServer, error, reply, tool_call

from conftest import CALLS
from test_loop import start

CONFIG: Any = {"configurable": {"thread_id": "gate"}}
QUESTION = "May I delete /tmp/x?"


def pause(server: ScriptedServer, context: LoopContext, **policy: Any) -> tuple[Any, dict[str, Any]]:
    server.add(reply(None, tool_call("add", a=1, b=2), tool_call("delete_file", path="/tmp/x")),
               reply(QUESTION))
    graph = compile_graph(memory_saver())
    out = graph.invoke(start("add and delete", **policy), CONFIG, context=context)
    return graph, out


def test_gated_call_pauses_with_the_hitl_payload_after_plain_calls_ran(
    server: ScriptedServer, context: LoopContext
) -> None:
    _, out = pause(server, context)
    [interrupt] = out["__interrupt__"]
    assert interrupt.value == {
        "action_requests": [{"name": "delete_file", "args": {"path": "/tmp/x"},
                             "description": QUESTION, "arguments": {"path": "/tmp/x"}}],
        "review_configs": [{"action_name": "delete_file",
                            "allowed_decisions": ["approve", "edit", "reject"]}],
    }
    assert CALLS == [("add", {"a": 1, "b": 2})]
    question_request = server.requests[1]
    # the round's request, tools and all, with tool_choice "none": the prefix stays the same
    assert question_request.body["tools"] == server.requests[0].body["tools"]
    assert question_request.body["tool_choice"] == "none" and server.requests[0].body["tool_choice"] == "auto"
    assert question_request.messages[-1] == {
        "role": "tool", "tool_call_id": "call_1_1",
        "content": "[AWAITING USER CONFIRMATION for delete_file]"}
    # the placeholder is sent, never stored
    assert [type(m) for m in out["messages"]] == [HumanMessage, AIMessage, ToolMessage]


def test_approve_runs_the_call_and_continues(server: ScriptedServer, context: LoopContext) -> None:
    graph, _ = pause(server, context)
    server.add(reply("Deleted."))
    out = graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), CONFIG, context=context)
    assert CALLS == [("add", {"a": 1, "b": 2}), ("delete_file", {"path": "/tmp/x"})]
    assert out["messages"][-1].content == "Deleted."
    assert [m["role"] for m in server.requests[2].messages] == ["user", "assistant", "tool", "tool"]
    assert server.requests[2].messages[3]["content"] == "deleted /tmp/x"


def test_edit_runs_the_edited_call_and_history_shows_it(server: ScriptedServer, context: LoopContext) -> None:
    graph, _ = pause(server, context)
    server.add(reply("Deleted the other one."))
    edit = {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "/tmp/y"}}}
    out = graph.invoke(Command(resume={"decisions": [edit]}), CONFIG, context=context)
    assert CALLS[-1] == ("delete_file", {"path": "/tmp/y"})
    sent_call = server.requests[2].messages[1]["tool_calls"][1]
    assert sent_call["function"]["arguments"] == '{"path": "/tmp/y"}'
    assert out["messages"][1].tool_calls[1]["args"] == {"path": "/tmp/y"}
    assert len(out["messages"]) == 5


def test_reject_never_runs_the_call_and_tells_the_model(server: ScriptedServer, context: LoopContext) -> None:
    graph, _ = pause(server, context)
    server.add(reply("Understood, not deleting."))
    decision = {"type": "reject", "message": "Keep that file."}
    out = graph.invoke(Command(resume={"decisions": [decision]}), CONFIG, context=context)
    assert [c[0] for c in CALLS] == ["add"]
    assert server.requests[2].messages[3]["content"] == "Action denied by user. Keep that file."
    assert out["messages"][-1].content == "Understood, not deleting."


def test_confirm_allow_exempts_and_confirm_deny_gates(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply(None, tool_call("delete_file", path="/a")), reply("done"))
    out = compile_graph().invoke(start("x", confirm_allow=["delete_file"]), context=context)
    assert "__interrupt__" not in out and CALLS == [("delete_file", {"path": "/a"})]
    server.add(reply(None, tool_call("add", a=1, b=1)), reply("ask?"))
    out = compile_graph(memory_saver()).invoke(start("x", confirm_deny=["add"]), CONFIG, context=context)
    assert out["__interrupt__"][0].value["action_requests"][0]["name"] == "add"


def test_without_the_model_question_the_default_text_describes_the_call(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(reply(None, tool_call("delete_file", path="/a")))
    out = compile_graph(memory_saver()).invoke(start("x", ask_model_to_confirm=False), CONFIG, context=context)
    assert out["__interrupt__"][0].value["action_requests"][0]["description"] == (
        'This action requires your explicit confirmation before it can proceed: '
        'delete_file({"path": "/a"})')


def test_a_failing_question_call_still_pauses_with_the_default_text(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(reply(None, tool_call("delete_file", path="/a")), error(500))
    out = compile_graph(memory_saver()).invoke(start("x"), CONFIG, context=context)
    assert out["__interrupt__"][0].value["action_requests"][0]["description"].startswith(
        "This action requires your explicit confirmation")


def test_a_wrong_resume_of_the_graph_raises_and_leaves_the_thread_paused(
    server: ScriptedServer, context: LoopContext
) -> None:
    graph, _ = pause(server, context)
    with pytest.raises(ValidationError, match=r"expected 1 decision\(s\), one per pending call "
                       r"\['delete_file'\]") as caught:
        graph.invoke(Command(resume={"decisions": []}), CONFIG, context=context)
    assert is_invalid_resume(caught.value)
    assert [c[0] for c in CALLS] == ["add"]
    assert graph.get_state(CONFIG).interrupts  # nothing was stored: still paused
    server.add(reply("Deleted."))
    out = graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), CONFIG, context=context)
    assert out["messages"][-1].content == "Deleted."
    assert CALLS[-1] == ("delete_file", {"path": "/tmp/x"})
