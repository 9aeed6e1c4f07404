"""The gate holds whichever way a run is driven: pinned in the thread, claimed in the ledger.

Through the Orchestrator in a new OS process configured differently, and through graphs the
user compiles with graphloop's savers: stale resumes, new input while paused, dismissals,
`respond`, edits checked by the tool's schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphloop.graph import (
    AlreadyDecidedError,
    Approvals,
    ConfigurationError,
    InvalidDecisionError,
    LedgerWarning,
    LoopContext,
    LoopGraph,
    ModelCallError,
    ModelConfig,
    Orchestrator,
    compile_graph,
    memory_saver,
    open_ledger,
    open_saver,
    serve,
)
from graphloop.graph.builder import _warn_no_ledger  # pyright: ignore[reportPrivateUsage]
from graphloop.graph.testing import ScriptedServer, error, junk, reply, tool_call
from graphloop.nodes.abandon import DISMISSED, WENT_ON
from graphloop.nodes.audit import decision_entries
from graphloop.nodes.confirm import check_decisions, default_question, from_inbox
from graphloop.nodes.execute_tools import CHANGED, NO_RECORD
from graphloop.nodes.policy import allowed_tools, gated_tools, pin_gate, pinned
from graphloop.nodes.state import PendingCall, policy_of

from conftest import CALLS, TOOLS, add

QUESTION = "May I delete /tmp/a?"
CHILD = Path(__file__).parent / "gate_child.py"


def pause(server: ScriptedServer, orch: Orchestrator, **run: Any) -> str:
    server.add(reply(None, tool_call("delete_file", path="/tmp/a")), reply(QUESTION))
    result = orch.run_sync("delete /tmp/a", **run)
    assert result.checkpoint is not None and result.checkpoint.question == QUESTION
    return result.thread_id


def resume_in_child(db: Path, thread_id: str, server: ScriptedServer, setup: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(CHILD), str(db), thread_id, server.url, setup],
                          capture_output=True, text=True, timeout=120, cwd=CHILD.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- pure functions: the pinned gate, Agent Inbox's responses ---------------------------------

def test_a_resume_may_add_gates_but_never_remove_the_threads() -> None:
    started = LoopContext.create(tools=TOOLS, confirm_required=["delete_file"], roles={"ops": ["add", "delete_file"]})
    policy = pinned({**policy_of({"messages": []}), "user_role": "ops"}, started)
    assert policy["gate"] == pin_gate(policy, started)
    later = LoopContext.create(tools=TOOLS, confirm_required=["add"], roles={"user": ["add"]})
    assert gated_tools(policy, later) == {"delete_file", "add"}
    assert allowed_tools(policy, later) == ("add", "delete_file")  # the thread's role, not this process's
    assert allowed_tools(policy, LoopContext.create(tools=[add])) == ("add",)  # a tool it lacks is not offered


def test_agent_inbox_responses_map_onto_decisions() -> None:
    call = PendingCall(id="c1", name="delete_file", args={"path": "/a"})
    assert from_inbox([{"type": "accept", "args": None}], [call]) == [{"type": "approve"}]
    assert from_inbox([{"type": "accept", "args": {"action": "delete_file", "args": {"path": "/a"}}}],
                      [call]) == [{"type": "approve"}]
    assert from_inbox([{"type": "edit", "args": {"action": "delete_file", "args": {"path": "/b"}}}], [call]) == [
        {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "/b"}}}]
    assert from_inbox([{"type": "response", "args": "keep it"}], [call]) == [{"type": "respond", "message": "keep it"}]
    assert from_inbox([{"type": "ignore", "args": None}], [call, call]) == [{"type": "ignore"}] * 2
    with pytest.raises(InvalidDecisionError, match="Agent Inbox answers one action at a time"):
        from_inbox([{"type": "accept", "args": None}], [call, call])


def test_an_inbox_accept_approves_only_the_call_as_shown() -> None:
    call = PendingCall(id="c1", name="delete_file", args={"path": "/a"})
    shown = [{"type": "accept", "args": {"action": "delete_file", "args": {"path": "/a"}}}]
    assert check_decisions(shown, [call]) == [{"type": "approve"}]
    for other in ({}, {"path": "/etc"}):
        with pytest.raises(InvalidDecisionError, match=r"accept approves the call as shown; send an edit"):
            check_decisions([{"type": "accept", "args": {"action": "delete_file", "args": other}}], [call])


def test_inbox_responses_passed_as_decisions_are_read_as_inbox_responses() -> None:
    call = PendingCall(id="c1", name="delete_file", args={"path": "/a"})
    assert check_decisions({"decisions": [{"type": "accept", "args": None}]}, [call]) == [{"type": "approve"}]
    assert check_decisions({"decisions": [{"type": "response", "args": "kept"}]}, [{**call, "allowed": ["respond"]}]) == [
        {"type": "respond", "message": "kept"}]
    with pytest.raises(InvalidDecisionError, match=r"names the action 'send_email': it answers another pause"):
        check_decisions([{"type": "accept", "args": {"action": "send_email", "args": {"path": "/a"}}}], [call])


def test_respond_needs_a_message_and_must_be_allowed() -> None:
    call = PendingCall(id="c1", name="delete_file", args={"path": "/a"}, allowed=["approve", "respond"])
    assert check_decisions({"decisions": [{"type": "respond", "message": "no"}]}, [call]) == [
        {"type": "respond", "message": "no"}]
    with pytest.raises(InvalidDecisionError, match="needs a non-empty 'message'"):
        check_decisions({"decisions": [{"type": "respond"}]}, [call])
    with pytest.raises(InvalidDecisionError, match=r"decision 'respond' is not allowed for 'delete_file'"):
        check_decisions({"decisions": [{"type": "respond", "message": "no"}]}, [{**call, "allowed": ["approve"]}])


def test_a_policy_without_one_call_per_pause_takes_the_contexts_and_one_that_says_keeps_its_own() -> None:
    context = LoopContext.create(one_call_per_pause=True)
    assert pinned(policy_of({"messages": []}), context)["one_call_per_pause"] is True
    assert pinned(policy_of({"messages": [], "policy": {"one_call_per_pause": False}}), context)[
        "one_call_per_pause"] is False
    assert pinned(policy_of({"messages": []}), LoopContext.create())["one_call_per_pause"] is False


def test_an_empty_command_is_refused_with_what_to_send(server: ScriptedServer, model: ModelConfig, db: Path) -> None:
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    thread = pause(server, orch)
    with open_saver(db) as saver:
        graph = compile_graph(saver)
        config: Any = {"configurable": {"thread_id": thread}}
        with pytest.raises(InvalidDecisionError, match=r"Command\(\) carries no resume value.*Command\(resume="):
            graph.invoke(Command(resume=None), config, context=orch.context)
        assert graph.get_state(config).next == ("interrupt_for_confirm",)


@pytest.mark.parametrize("value", ["false", 1, None])
def test_one_call_per_pause_must_be_a_bool(value: object) -> None:
    with pytest.raises(ConfigurationError, match=rf"one_call_per_pause={value!r} must be True or False"):
        Orchestrator(TOOLS, one_call_per_pause=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be True or False"):
        LoopContext.create(one_call_per_pause=value)  # type: ignore[arg-type]


def test_a_decision_that_would_run_a_tool_the_run_may_not_use_is_refused_but_a_reject_is_not() -> None:
    call = PendingCall(id="c1", name="delete_file", args={"path": "/a"})
    for decision in ({"type": "approve"}, {"type": "edit", "edited_action": {"name": "delete_file", "args": {}}}):
        with pytest.raises(InvalidDecisionError, match=r"this run may not use it; allowed tools: \['add'\]"):
            check_decisions({"decisions": [decision]}, [call], allowed=["add"], thread_id="t1")
    assert check_decisions({"decisions": [{"type": "reject"}]}, [call], allowed=["add"]) == [{"type": "reject"}]


# -- the Orchestrator, resumed in a new OS process with another configuration ------------------

def test_a_resume_with_a_smaller_confirm_required_still_asks_about_the_threads_gated_tools(
        server: ScriptedServer, model: ModelConfig, db: Path) -> None:
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    thread_id = pause(server, orch)
    server.add(reply(None, tool_call("delete_file", path="/tmp/b")), reply("May I delete /tmp/b too?"))
    out = resume_in_child(db, thread_id, server, "no-gate")
    assert out["paused"] is True  # the model's second delete waits, though the child gates nothing
    audit = Approvals(db).tool_calls(thread_id)
    assert [(c["tool"], c["args"], c["status"]) for c in audit] == [("delete_file", {"path": "/tmp/a"}, "success")]
    [waiting] = Approvals(db).pending()
    assert waiting["calls"][0]["args"] == {"path": "/tmp/b"}


def test_a_resume_in_a_process_without_the_tool_is_refused_before_anything_is_stored(
        server: ScriptedServer, model: ModelConfig, db: Path) -> None:
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    thread_id = pause(server, orch)
    out = resume_in_child(db, thread_id, server, "no-tool")
    assert out["error"] == "InvalidDecisionError"
    assert "this process has no tool 'delete_file'" in out["message"] and "still waits" in out["message"]
    assert [e["thread_id"] for e in orch.approvals.pending()] == [thread_id]
    assert orch.approvals.decisions(thread_id) == [] and orch.approvals.tool_calls(thread_id) == []
    server.add(reply("Deleted."))
    assert orch.resume_sync(thread_id, confirmed=True).response == "Deleted."  # the thread is intact
    assert CALLS == [("delete_file", {"path": "/tmp/a"})]


def test_a_resume_in_a_process_with_other_roles_keeps_the_threads_tools(
        server: ScriptedServer, model: ModelConfig, db: Path) -> None:
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model],
                        roles={"ops": ["add", "delete_file"]})
    thread_id = pause(server, orch, user_role="ops")
    server.add(reply("Deleted /tmp/a."))
    out = resume_in_child(db, thread_id, server, "other-roles")
    assert out == {"response": "Deleted /tmp/a.", "paused": False, "tools": ["delete_file"]}
    assert server.requests[-1].tool_names == ["add", "delete_file"]  # the thread's role, not the child's


# -- a graph the user compiles with graphloop's savers ----------------------------------------

def context_for(server: ScriptedServer, **options: Any) -> LoopContext:
    return LoopContext.create(models=[server.model_config(label="primary", max_retries=0)], tools=TOOLS,
                              confirm_required=["delete_file"], **options)


def test_a_call_routed_before_a_crash_waits_for_the_gate_the_resuming_process_adds(
        server: ScriptedServer, db: Path) -> None:
    """The first process gated nothing and stopped between the model's reply and its tools (its
    `run_tool` tasks saved); the one that resumes gates delete_file: the call does not run."""
    ungated = LoopContext.create(models=[server.model_config(label="primary", max_retries=0)], tools=TOOLS)
    config: Any = {"configurable": {"thread_id": "routed"}}
    server.add(reply(None, tool_call("add", a=1, b=1), tool_call("delete_file", path="/tmp/r")))
    with open_saver(db) as saver:
        compile_graph(saver).invoke({"messages": [HumanMessage("go")]}, config, context=ungated,
                                    interrupt_before=["run_tool"], durability="sync")
    gating = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db,
                          models=[server.model_config(label="primary", max_retries=0)])
    server.add(reply(None, tool_call("delete_file", path="/tmp/r")), reply(QUESTION))
    paused = gating.resume_sync("routed")
    assert CALLS == [("add", {"a": 1, "b": 1})] and paused.checkpoint is not None
    assert "now needs the user's confirmation" in server.requests[-2].messages[-1]["content"]
    assert [(c["tool"], c["status"]) for c in gating.approvals.tool_calls("routed")] == [
        ("add", "success"), ("delete_file", "refused")]


def test_a_call_routed_before_a_crash_to_a_tool_the_resuming_process_lacks_is_an_unknown_tool(
        server: ScriptedServer, db: Path) -> None:
    model = server.model_config(label="primary", max_retries=0)
    config: Any = {"configurable": {"thread_id": "lacking"}}
    server.add(reply(None, tool_call("get_weather", city="Oslo")))
    with open_saver(db) as saver:
        compile_graph(saver).invoke({"messages": [HumanMessage("go")]}, config,
                                    context=LoopContext.create(models=[model], tools=TOOLS),
                                    interrupt_before=["run_tool"], durability="sync")
    lacking = Orchestrator([t for t in TOOLS if getattr(t, "__name__", "") != "get_weather"], db=db, models=[model])
    server.add(reply("No weather tool here."))
    assert lacking.resume_sync("lacking").response == "No weather tool here."
    assert "Error: unknown tool 'get_weather'" in server.requests[-1].messages[-1]["content"]
    assert [(c["tool"], c["status"]) for c in lacking.approvals.tool_calls("lacking")] == [("get_weather", "refused")]


def test_a_compiled_graph_refuses_a_second_approval_from_an_old_checkpoint(server: ScriptedServer, db: Path) -> None:
    context, config = context_for(server), {"configurable": {"thread_id": "t1"}}
    server.add(reply(None, tool_call("delete_file", path="/tmp/a")), reply(QUESTION), reply("Deleted."))
    with open_saver(db) as saver:
        graph = compile_graph(saver)
        graph.invoke({"messages": [HumanMessage("delete /tmp/a")]}, config, context=context)
        paused_at = graph.get_state(config).config
        graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), paused_at, context=context)
        finished = graph.get_state(config)
        with pytest.raises(AlreadyDecidedError, match=r"already decided \('approve' .*'delete_file' is success"):
            graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), paused_at, context=context)
        after = graph.get_state(config)
    assert CALLS == [("delete_file", {"path": "/tmp/a"})]
    assert after.config == finished.config and after.values["messages"][-1].content == "Deleted."
    assert [c["status"] for c in Approvals(db).tool_calls("t1")] == ["success"]


def test_new_input_while_paused_answers_the_waiting_call_as_not_run(server: ScriptedServer) -> None:
    context, config = context_for(server), {"configurable": {"thread_id": "t2"}}
    server.add(reply(None, tool_call("add", a=1, b=2), tool_call("delete_file", path="/tmp/a")), reply(QUESTION),
               reply("4."))
    graph = compile_graph(memory_saver())
    graph.invoke({"messages": [HumanMessage("add, then delete")]}, config, context=context)
    [waiting] = graph.get_state(config).values["pending"]
    fake = ToolMessage("Successfully handled tool call.", tool_call_id=waiting["id"], name="delete_file")
    out = graph.invoke({"messages": [fake, HumanMessage("never mind: 2 + 2?")]}, config, context=context)
    sent = server.requests[-1].messages
    assert [m["role"] for m in sent[-4:]] == ["assistant", "tool", "tool", "user"]
    assert sent[-3]["content"] == "3"
    assert sent[-2]["content"] == WENT_ON.format(name="delete_file")
    assert out["pending"] == [] and out["messages"][-1].content == "4."
    assert CALLS == [("add", {"a": 1, "b": 2})]


def test_a_dismissed_pause_answers_its_calls_and_ends_the_run(server: ScriptedServer) -> None:
    context, config = context_for(server), {"configurable": {"thread_id": "t3"}}
    server.add(reply(None, tool_call("delete_file", path="/tmp/a")), reply(QUESTION))
    graph = compile_graph(memory_saver())
    graph.invoke({"messages": [HumanMessage("delete")]}, config, context=context)
    out = graph.invoke(Command(resume=[{"type": "ignore", "args": None}]), config, context=context)
    assert out["messages"][-1].content == DISMISSED.format(name="delete_file")
    assert graph.get_state(config).next == () and out["pending"] == [] and CALLS == []


def test_respond_answers_in_the_tools_place(server: ScriptedServer) -> None:
    context = context_for(server, allowed_decisions={"delete_file": ["approve", "reject", "respond"]})
    config = {"configurable": {"thread_id": "t4"}}
    server.add(reply(None, tool_call("delete_file", path="/tmp/a")), reply(QUESTION), reply("Kept."))
    graph = compile_graph(memory_saver())
    out = graph.invoke({"messages": [HumanMessage("delete")]}, config, context=context)
    assert out["__interrupt__"][0].value["review_configs"][0]["allowed_decisions"] == ["approve", "reject", "respond"]
    graph.invoke(Command(resume={"decisions": [{"type": "respond", "message": "No: keep it."}]}), config,
                 context=context)
    tool = server.requests[-1].messages[-1]
    assert tool["role"] == "tool" and tool["content"] == "No: keep it." and CALLS == []


def test_edited_arguments_are_converted_by_the_tools_schema_and_a_bad_one_keeps_the_pause(
        server: ScriptedServer, model: ModelConfig, db: Path) -> None:
    orch = Orchestrator(TOOLS, confirm_required=["add"], db=db, models=[model])
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("Add 1 and 2?"))
    thread_id = orch.run_sync("add").thread_id
    with pytest.raises(InvalidDecisionError, match=r"field 'b': Input should be a valid integer.*got 'two'"):
        orch.resume_sync(thread_id, decisions=[{"type": "edit", "edited_action": {"name": "add",
                                                                                   "args": {"a": "1", "b": "two"}}}])
    assert [e["thread_id"] for e in orch.approvals.pending()] == [thread_id]
    server.add(reply("10."))
    orch.resume_sync(thread_id, decisions=[{"type": "edit", "edited_action": {"name": "add", "args": {"a": "3", "b": "7"}}}])
    assert CALLS == [("add", {"a": 3, "b": 7})]
    [decision] = orch.approvals.decisions(thread_id)
    assert json.loads(decision["payload"])["edited_action"]["args"] == {"a": 3, "b": 7}


def test_a_saver_graphloop_cannot_attach_a_ledger_to_warns_once() -> None:
    _warn_no_ledger.cache_clear()  # whatever other tests compiled before
    with pytest.warns(LedgerWarning, match="cannot attach a ledger to InMemorySaver"):
        compile_graph(InMemorySaver())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile_graph(InMemorySaver())  # once per saver type
        compile_graph(memory_saver())



@pytest.mark.postgres
def test_the_served_graph_claims_in_the_postgres_database_its_settings_name(
        server: ScriptedServer, postgres_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "graphloop.toml").write_text(
        f'db = "{postgres_db}"\ntools = ["conftest:TOOLS"]\nconfirm_required = ["delete_file"]\n\n'
        f'[[models]]\nlabel = "primary"\napi_url = "{server.url}"\nmodel_name = "scripted"\nmax_retries = 0\n')
    monkeypatch.setenv("GRAPHLOOP_CONFIG", str(tmp_path / "graphloop.toml"))
    serve.server_context.cache_clear()
    try:
        served = serve.graph.copy({"checkpointer": memory_saver()})  # as the server does, its own saver
        config = {"configurable": {"thread_id": "served-1"}}
        server.add(reply(None, tool_call("delete_file", path="/tmp/a")), reply(QUESTION), reply("Deleted."))
        served.invoke({"messages": [{"role": "user", "content": "delete /tmp/a"}]}, config)
        paused_at = served.get_state(config).config
        served.invoke(Command(resume={"decisions": [{"type": "approve"}]}), paused_at)
        with pytest.raises(AlreadyDecidedError, match="earlier view"):  # a second worker, the same view
            served.invoke(Command(resume={"decisions": [{"type": "approve"}]}), paused_at)
    finally:
        serve.server_context.cache_clear()
    assert [(c["tool"], c["status"]) for c in Approvals(postgres_db).tool_calls("served-1")] == [
        ("delete_file", "success")]
    assert CALLS == [("delete_file", {"path": "/tmp/a"})]


@pytest.fixture
def saver(db: Path) -> Iterator[BaseCheckpointSaver[str]]:
    with open_saver(db) as opened:
        yield opened


def paused_graph(server: ScriptedServer, saver: BaseCheckpointSaver[str], thread_id: str
                 ) -> tuple[LoopGraph, LoopContext, RunnableConfig]:
    """A graph on `saver` (with its ledger) paused at the gate for delete_file(/tmp/a)."""
    context: LoopContext = context_for(server)
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    server.add(reply(None, tool_call("delete_file", path="/tmp/a")), reply(QUESTION))
    graph = compile_graph(saver)
    graph.invoke({"messages": [HumanMessage("delete /tmp/a")]}, config, context=context)
    return graph, context, config


def test_a_call_changed_after_it_was_shown_does_not_run_on_approval(server: ScriptedServer, db: Path,
                                                                           saver: BaseCheckpointSaver[str]) -> None:
    graph, context, config = paused_graph(server, saver, "changed")
    [ai] = [m for m in graph.get_state(config).values["messages"] if m.type == "ai"]
    forged = ai.model_copy(update={"tool_calls": [{**ai.tool_calls[0], "args": {"path": "/etc"}}]})
    graph.update_state(config, {"messages": [forged]}, as_node="ask_confirmation")
    server.add(reply("Nothing deleted."))
    out = graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config, context=context)
    assert CALLS == []
    assert [m.content for m in out["messages"] if m.type == "tool"] == [CHANGED]
    assert [c["status"] for c in Approvals(db).tool_calls("changed")] == ["refused"]


def test_a_decision_forged_into_the_state_runs_nothing(server: ScriptedServer, db: Path,
                                                                           saver: BaseCheckpointSaver[str]) -> None:
    graph, context, config = paused_graph(server, saver, "forged")
    [waiting] = graph.get_state(config).values["pending"]
    graph.update_state(config, {"pending": [{**waiting, "decision": {"type": "approve"}}], "question": ""},
                       as_node="interrupt_for_confirm")
    server.add(reply("Nothing deleted."))
    out = graph.invoke(None, config, context=context)
    assert CALLS == [] and Approvals(db).decisions("forged") == []
    assert [m.content for m in out["messages"] if m.type == "tool"] == [NO_RECORD]


def test_a_second_client_deciding_otherwise_is_refused(server: ScriptedServer, db: Path,
                                                                           saver: BaseCheckpointSaver[str]) -> None:
    graph, context, config = paused_graph(server, saver, "other")
    state = graph.get_state(config)
    with open_ledger(db) as ledger:  # another client's decision, recorded a moment earlier
        ledger.record_decisions(decision_entries("other", state.interrupts[0].id, state.values["pending"],
                                                 [{"type": "reject"}], decided_by="bob"))
    with pytest.raises(AlreadyDecidedError, match=r"was already decided \('reject' by 'bob'"):
        graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config, context=context)
    assert CALLS == [] and graph.get_state(config).next == ("interrupt_for_confirm",)


def test_junk_from_the_model_falls_back_to_the_next_model_and_the_default_question(
        server: ScriptedServer, db: Path) -> None:
    primary = server.model_config(label="primary", max_retries=0)
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db,
                        models=[primary, server.model_config(label="backup", max_retries=0)])
    server.add(junk({"choices": []}), reply(None, tool_call("delete_file", path="/tmp/a")),
               junk({"choices": [{"message": None}]}), junk({"choices": [{"message": None}]}))
    paused = orch.run_sync("delete /tmp/a")
    assert paused.checkpoint is not None and paused.checkpoint.question == default_question(
        [PendingCall(id="x", name="delete_file", args={"path": "/tmp/a"})])
    assert CALLS == []


def test_an_approval_from_before_the_user_went_on_is_refused(server: ScriptedServer, db: Path,
                                                             saver: BaseCheckpointSaver[str]) -> None:
    graph, context, config = paused_graph(server, saver, "went-on")
    paused_at = graph.get_state(config).config
    server.add(reply("Fine."))
    graph.invoke({"messages": [HumanMessage("never mind")]}, config, context=context)
    head = graph.get_state(config)
    with pytest.raises(AlreadyDecidedError, match=r"answered without a decision and its call to 'delete_file' "
                                                  r"is abandoned"):
        graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), paused_at, context=context)
    assert CALLS == [] and graph.get_state(config).config == head.config
    assert [c["status"] for c in Approvals(db).tool_calls("went-on")] == ["abandoned"]


@pytest.mark.parametrize("url", ["http://ann:sk-url-secret@127.0.0.1:1/v1", "http://sk-url-secret@127.0.0.1:1/v1",
                                 "//ann:sk-url-secret@127.0.0.1:1/v1", "http://127.0.0.1:1/v1?key=sk-url-secret",
                                 "http://127.0.0.1:1/v1?api%2Dkey=sk-url-secret", "http://h/v1?sig=sk-url-secret"])
def test_a_key_inside_the_model_url_is_refused_without_being_shown(url: str) -> None:
    with pytest.raises(ConfigurationError, match="api_url carries a secret") as refused:
        ModelConfig.coerce({"label": "m", "api_url": url, "model_name": "m"})
    assert "sk-url-secret" not in str(refused.value)


def test_a_key_the_server_echoes_is_in_no_error_text_cause_or_context(server: ScriptedServer) -> None:
    model = server.model_config(label="primary", api_key="sk-echoed-0123456789", max_retries=0)
    orch = Orchestrator(TOOLS, db=memory_saver(), models=[model])
    server.add(error(401, "Incorrect API key provided: sk-echoed-0123456789"))
    with pytest.raises(ModelCallError) as failed:
        orch.run_sync("hi")
    chain: list[BaseException] = []
    cursor: BaseException | None = failed.value
    while cursor is not None and len(chain) < 10:
        chain.append(cursor)
        cursor = cursor.__cause__ or cursor.__context__
    assert chain and all("sk-echoed-0123456789" not in f"{e} {e!r}" for e in chain)
    assert "HTTP 401" in str(failed.value)
