"""Approvals that hold: validated and bound resumes, decisions once, remembered rules, audit, inbox."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langgraph.types import Command

from graphloop.graph import (
    AlreadyDecidedError,
    Approvals,
    ConfigurationError,
    Decision,
    InvalidDecisionError,
    LoopContext,
    ModelConfig,
    NotPausedError,
    Orchestrator,
    OrchestratorResult,
    PendingCall,
    ResumeError,
    ThreadVersionError,
    UnknownThreadError,
    call_hash,
    compile_graph,
    open_ledger,
    open_saver,
)
from graphloop.graph.testing import ScriptedServer, reply, tool_call
from graphloop.nodes.audit import decision_entries

from conftest import CALLS, SECRET, TOOLS, stored_bytes

QUESTION = "Shall I delete /tmp/x?"


@pytest.fixture
def db(any_db: Path | str) -> Path | str:
    return any_db


@pytest.fixture
def orch(model: ModelConfig, db: Path) -> Orchestrator:
    return Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model],
                        roles={"user": ["add", "get_weather", "delete_file"], "admin": "*"},
                        allowed_decisions={"delete_file": ["approve", "edit", "reject"],
                                           "add": ["approve", "reject"]})


def paused(server: ScriptedServer, orch: Orchestrator, **run: Any) -> OrchestratorResult:
    server.add(reply(None, tool_call("get_weather", city="Rome"), tool_call("delete_file", path="/tmp/x")),
               reply(QUESTION))
    result = orch.run_sync("weather, then delete", **run)
    assert result.checkpoint is not None
    return result


# -- validated resumes: each is refused with its own message, and the thread stays resumable --

BAD_RESUMES: dict[str, tuple[type[ResumeError], str, dict[str, Any]]] = {
    "wrong count": (InvalidDecisionError, r"expected 1 decision\(s\), one per pending call \['delete_file'\]",
                    {"decisions": [{"type": "approve"}, {"type": "approve"}]}),
    "unknown type": (InvalidDecisionError, r"decision \{'type': 'maybe'\} for 'delete_file' has no valid "
                     r"'type'; use one of \['approve', 'edit', 'reject', 'respond', 'ignore'\]",
                     {"decisions": [{"type": "maybe"}]}),
    "edit without args": (InvalidDecisionError, r"edit for 'delete_file' needs edited_action",
                          {"decisions": [{"type": "edit", "edited_action": {"name": "delete_file"}}]}),
    "edit to another tool": (InvalidDecisionError, r"switches to tool 'fail': an edit changes a call's arguments",
                              {"decisions": [{"type": "edit", "edited_action": {"name": "fail",
                                                                                "args": {"reason": "x"}}}]}),
    "earlier pause": (InvalidDecisionError, r"this decision answers pause 'not-this-one', but thread",
                      {"confirmed": True, "interrupt_id": "not-this-one"}),
    "an answer instead of a decision": (InvalidDecisionError, r"waits for a decision on tool calls, not an "
                                        r"answer; pass confirmed=True/False or decisions=\[\.\.\.\]",
                                        {"answer": "yes"}),
    "no decision": (InvalidDecisionError, r"is waiting for a decision; pass confirmed=True/False",
                    {}),
}


@pytest.mark.parametrize("case", BAD_RESUMES)
def test_a_bad_resume_is_refused_before_anything_is_stored_and_a_right_one_then_works(
    case: str, server: ScriptedServer, orch: Orchestrator
) -> None:
    error, message, kwargs = BAD_RESUMES[case]
    result = paused(server, orch)
    with pytest.raises(error, match=message):
        orch.resume_sync(result.thread_id, **kwargs)
    assert [e["thread_id"] for e in orch.approvals.pending()] == [result.thread_id]
    assert orch.approvals.decisions() == []
    server.add(reply("Deleted."))
    assert orch.resume_sync(result.checkpoint, confirmed=True).response == "Deleted."  # type: ignore[arg-type]
    assert CALLS[-1] == ("delete_file", {"path": "/tmp/x"})


def test_a_decision_not_allowed_for_that_call_is_refused(server: ScriptedServer, orch: Orchestrator, db: Path) -> None:
    orch = Orchestrator(TOOLS, confirm_required=["add"], db=db, models=orch.context.models,
                        allowed_decisions={"add": ["approve", "reject"]})
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("Add 1 and 2?"))
    result = orch.run_sync("add")
    assert result.checkpoint is not None
    assert result.checkpoint.request["review_configs"] == [
        {"action_name": "add", "allowed_decisions": ["approve", "reject"]}]
    with pytest.raises(InvalidDecisionError, match=r"decision 'edit' is not allowed for 'add'; "
                       r"allowed: \['approve', 'reject'\]"):
        orch.resume_sync(result.thread_id, decisions=[
            {"type": "edit", "edited_action": {"name": "add", "args": {"a": 5, "b": 5}}}])
    server.add(reply("3"))
    assert orch.resume_sync(result.thread_id, decisions=[{"type": "approve"}]).response == "3"


def test_a_resume_of_an_unknown_thread_is_refused_and_starts_nothing(orch: Orchestrator, db: Path) -> None:
    with pytest.raises(UnknownThreadError, match=r"no thread 'nope' in the database"):
        orch.resume_sync("nope", confirmed=True)
    with open_saver(db) as saver:
        assert compile_graph(saver).get_state({"configurable": {"thread_id": "nope"}}).values == {}


def test_a_resume_of_a_thread_that_is_not_paused_is_refused(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(reply("done"))
    finished = orch.run_sync("hi")
    with pytest.raises(NotPausedError, match="has finished; nothing to resume"):
        orch.resume_sync(finished.thread_id, confirmed=True)
    server.add(reply("and again"))
    assert orch.run_sync("more", thread_id=finished.thread_id).response == "and again"


def test_a_resume_that_loses_the_race_gets_already_decided_and_runs_nothing(
    server: ScriptedServer, orch: Orchestrator, db: Path
) -> None:
    result = paused(server, orch)
    assert result.checkpoint is not None
    [entry] = orch.approvals.pending()
    shown = [PendingCall(id=c["id"], name=c["name"], args=c["args"]) for c in entry["calls"]]  # type: ignore[typeddict-item]
    with open_ledger(db) as ledger:  # another server recorded its decision a moment earlier
        ledger.claim_decisions(decision_entries(result.thread_id, entry["interrupt_id"], shown,
                                                [Decision(type="reject")], decided_by="bob"))
    with pytest.raises(AlreadyDecidedError, match=r"call 'call_1_1' \(delete_file\) was already decided "
                       r"\('reject' by 'bob' at .*\); nothing was changed") as caught:
        orch.resume_sync(result.checkpoint, confirmed=True, decided_by="ann")
    assert caught.value.decisions[0]["decided_by"] == "bob"
    assert "delete_file" not in [c[0] for c in CALLS]
    # the winner stopped before carrying out its decision: still listed, as decided...
    [listed] = orch.approvals.pending()
    assert listed["thread_id"] == result.thread_id and listed["decided"] is True
    # ...and a bare resume carries it out
    server.add(reply("Not deleted."))
    done = orch.resume_sync(result.thread_id)
    assert done.tool_calls[1]["result"] == "Action denied by user."
    assert "delete_file" not in [c[0] for c in CALLS]
    assert orch.approvals.pending() == []


def test_an_approval_recorded_before_a_crash_is_not_carried_out_by_a_process_without_the_tool(
    server: ScriptedServer, orch: Orchestrator, model: ModelConfig, db: Path
) -> None:
    result = paused(server, orch)
    [entry] = orch.approvals.pending()
    shown = [PendingCall(id=c["id"], name=c["name"], args=c["args"]) for c in entry["calls"]]  # type: ignore[typeddict-item]
    with open_ledger(db) as ledger:  # recorded, then the process died before carrying it out
        ledger.claim_decisions(decision_entries(result.thread_id, entry["interrupt_id"], shown,
                                                [Decision(type="approve")], decided_by="bob"))
    lacking = Orchestrator([t for t in TOOLS if getattr(t, "name", getattr(t, "__name__", "")) != "delete_file"],
                           db=db, models=[model])
    with pytest.raises(InvalidDecisionError, match=r"this process has no tool 'delete_file'.*The thread still waits"):
        lacking.resume_sync(result.thread_id)
    assert "delete_file" not in [c[0] for c in CALLS]
    assert [e["decided"] for e in orch.approvals.pending()] == [True]
    server.add(reply("Deleted."))
    assert orch.resume_sync(result.thread_id).response == "Deleted."
    assert CALLS[-1] == ("delete_file", {"path": "/tmp/x"}) and orch.approvals.pending() == []


def test_the_orchestrator_takes_agent_inbox_responses_as_decisions(
    server: ScriptedServer, orch: Orchestrator
) -> None:
    result = paused(server, orch)
    server.add(reply("Deleted."))
    done = orch.resume_sync(result.thread_id, decisions=[{"type": "accept", "args": None}], decided_by="ann")
    assert done.response == "Deleted." and CALLS[-1] == ("delete_file", {"path": "/tmp/x"})
    assert [(d["decision"], d["decided_by"]) for d in orch.approvals.decisions(result.thread_id)] == [("approve", "ann")]


def test_a_bound_decision_for_an_earlier_pause_of_the_thread_is_refused(
    server: ScriptedServer, orch: Orchestrator
) -> None:
    first = paused(server, orch)
    server.add(reply(None, tool_call("delete_file", path="/tmp/again")), reply("Again?"))
    second = orch.resume_sync(first.checkpoint, confirmed=True)  # type: ignore[arg-type]
    assert second.checkpoint is not None and first.checkpoint is not None
    with pytest.raises(InvalidDecisionError, match=rf"this decision answers pause '{first.checkpoint.interrupt_id}', "
                       rf"but thread '{first.thread_id}' now waits at pause '{second.checkpoint.interrupt_id}'"):
        orch.resume_sync(first.thread_id, confirmed=True, interrupt_id=first.checkpoint.interrupt_id)
    server.add(reply("Deleted again."))
    assert orch.resume_sync(second.checkpoint, confirmed=True).response == "Deleted again."


def test_a_thread_saved_by_a_newer_graphloop_is_refused_naming_its_version(
    server: ScriptedServer, orch: Orchestrator, db: Path
) -> None:
    result = paused(server, orch)
    config: Any = {"configurable": {"thread_id": result.thread_id}}
    with open_saver(db) as saver:
        graph = compile_graph(saver)
        policy = graph.get_state(config).values["policy"]
        graph.update_state(config, {"policy": {**policy, "state_version": 99, "graphloop_version": "9.0.0"}})
    with pytest.raises(ThreadVersionError, match=rf"thread '{result.thread_id}' was saved by graphloop 9.0.0 "
                       r"\(state version 99\); this graphloop .* reads state versions up to 1: "
                       r"resume it with graphloop 9.0.0 or newer"):
        orch.resume_sync(result.thread_id, confirmed=True)
    assert "delete_file" not in [c[0] for c in CALLS]


# -- the inbox ----------------------------------------------------------------------------------

def test_the_inbox_lists_paused_threads_until_they_are_decided(server: ScriptedServer, orch: Orchestrator) -> None:
    result = paused(server, orch, user_id="ann")
    assert result.checkpoint is not None
    [entry] = orch.approvals.pending()
    assert entry["thread_id"] == result.thread_id
    assert entry["interrupt_id"] == result.checkpoint.interrupt_id  # the id LangGraph gave the pause
    assert entry["calls"] == [{"id": "call_1_1", "name": "delete_file", "args": {"path": "/tmp/x"}}]
    assert entry["question"] == QUESTION
    assert entry["user_id"] == "ann" and entry["user_role"] == "user"
    assert entry["waiting_since"].endswith("+00:00")
    assert entry["decided"] is False
    assert orch.approvals.pending(user_id="bob") == []
    server.add(reply("Deleted."))
    orch.resume_sync(entry["thread_id"], interrupt_id=entry["interrupt_id"], confirmed=True)
    assert orch.approvals.pending() == []


def test_the_inbox_lists_the_longest_waiting_first_to_an_app_without_models(
    server: ScriptedServer, orch: Orchestrator, db: Path
) -> None:
    first, second = paused(server, orch), paused(server, orch)
    assert [e["thread_id"] for e in Approvals(db).pending()] == [first.thread_id, second.thread_id]


def test_a_graph_resumed_directly_records_its_decision_and_leaves_the_inbox(
    server: ScriptedServer, context: LoopContext, db: Path
) -> None:
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply(QUESTION), reply("Deleted."))
    config: Any = {"configurable": {"thread_id": "direct"}}
    with open_saver(db) as saver, open_ledger(db) as ledger:
        graph, ctx = compile_graph(saver), replace(context, ledger=ledger)
        out = graph.invoke({"messages": [HumanMessage("delete it")]}, config, context=ctx)
        assert [e["interrupt_id"] for e in ledger.inbox()] == [out["__interrupt__"][0].id]
        graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config, context=ctx)
        assert ledger.inbox() == []
        [decision] = ledger.decisions("direct")
    assert decision["decision"] == "approve" and decision["decided_by"] is None
    assert decision["interrupt_id"] == out["__interrupt__"][0].id


# -- remembered rules ---------------------------------------------------------------------------

def test_always_allow_lets_later_runs_of_that_user_skip_the_gate(server: ScriptedServer, orch: Orchestrator) -> None:
    orch.approvals.grant("ann", "delete_file", "allow", granted_by="admin")
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("Deleted."))
    assert orch.run_sync("delete", user_id="ann").response == "Deleted."
    assert CALLS == [("delete_file", {"path": "/tmp/x"})]
    paused(server, orch, user_id="bob")  # another user still gets the question
    [rule] = orch.approvals.rule_entries()
    assert rule["user_id"] == "ann" and rule["granted_by"] == "admin"


def test_always_ask_gates_a_tool_that_needs_no_confirmation(server: ScriptedServer, orch: Orchestrator) -> None:
    orch.approvals.grant("ann", "get_weather", "ask")
    server.add(reply(None, tool_call("get_weather", city="Rome")), reply("Look up Rome?"))
    result = orch.run_sync("weather", user_id="ann")
    assert result.checkpoint is not None
    assert result.checkpoint.request["action_requests"][0]["name"] == "get_weather"
    assert CALLS == []


def test_never_allow_refuses_the_call_with_a_message_for_the_model(server: ScriptedServer, orch: Orchestrator) -> None:
    orch.approvals.grant("ann", "delete_file", "never")
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("I may not delete files."))
    result = orch.run_sync("delete", user_id="ann")
    assert result.response == "I may not delete files."
    assert CALLS == []
    assert server.requests[1].messages[-1]["content"].startswith(
        "Error: the user has chosen never to allow 'delete_file', so it was not run.")
    [row] = orch.approvals.tool_calls(result.thread_id)
    assert row["status"] == "refused" and row["user_id"] == "ann"


def test_the_runs_own_allow_and_deny_lists_take_precedence_over_remembered_rules(
    server: ScriptedServer, orch: Orchestrator
) -> None:
    orch.approvals.grant("ann", "delete_file", "never")
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("Deleted."))
    assert orch.run_sync("delete", user_id="ann", confirm_allow=["delete_file"]).response == "Deleted."
    orch.approvals.grant("ann", "delete_file", "allow")
    paused(server, orch, user_id="ann", confirm_deny=["delete_file"])


def test_rules_are_listed_replaced_and_revoked(orch: Orchestrator) -> None:
    approvals = orch.approvals
    approvals.grant("ann", "delete_file", "allow")
    approvals.grant("ann", "delete_file", "never")
    approvals.grant("ann", "add", "ask")
    assert approvals.rules("ann") == {"add": "ask", "delete_file": "never"}
    assert approvals.revoke("ann", "delete_file") is True
    assert approvals.revoke("ann", "delete_file") is False
    assert approvals.rules("ann") == {"add": "ask"}
    with pytest.raises(ConfigurationError, match=r"unknown tool 'rm'; known tools: \['add',"):
        approvals.grant("ann", "rm", "allow")
    with pytest.raises(ConfigurationError, match=r"rule='sometimes' is not one of \['allow', 'ask', 'never'\]"):
        approvals.grant("ann", "add", "sometimes")  # type: ignore[arg-type]


def test_a_rule_granted_mid_run_applies_from_the_next_run(server: ScriptedServer, orch: Orchestrator) -> None:
    result = paused(server, orch, user_id="ann")
    orch.approvals.grant("ann", "delete_file", "never")
    server.add(reply("Deleted."))
    orch.resume_sync(result.thread_id, confirmed=True)
    assert CALLS[-1] == ("delete_file", {"path": "/tmp/x"})  # the run's policy was fixed at its start


# -- the audit ----------------------------------------------------------------------------------

def test_every_call_and_decision_is_audited_without_secrets(
    server: ScriptedServer, orch: Orchestrator, db: Path
) -> None:
    result = paused(server, orch, user_id="ann")
    server.add(reply("Deleted /tmp/y."))
    edit = {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "/tmp/y"}}}
    orch.resume_sync(result.checkpoint, decisions=[edit], decided_by="ann@example.com")  # type: ignore[arg-type]
    weather, delete = orch.approvals.tool_calls(result.thread_id)
    assert {k: weather[k] for k in ("call_id", "round", "tool", "args", "status", "model", "user_id",
                                    "user_role", "result_chars")} == {
        "call_id": "call_1_0", "round": 1, "tool": "get_weather", "args": {"city": "Rome"},
        "status": "success", "model": "primary", "user_id": "ann", "user_role": "user",
        "result_chars": len("Rome: sunny")}
    assert delete["args"] == {"path": "/tmp/y"} and delete["status"] == "success"
    assert delete["duration_ms"] is not None and delete["duration_ms"] >= 0
    [decision] = orch.approvals.decisions(result.thread_id)
    assert decision["decision"] == "edit" and decision["decided_by"] == "ann@example.com"
    assert decision["call_hash"] == call_hash("delete_file", {"path": "/tmp/x"})
    assert decision["edited_hash"] == call_hash("delete_file", {"path": "/tmp/y"})
    assert decision["interrupt_id"] == result.checkpoint.interrupt_id  # type: ignore[union-attr]
    stored = stored_bytes(db)
    assert b"ann@example.com" in stored  # the scan reads the rows
    assert SECRET.encode() not in stored


def test_rejected_and_refused_calls_are_audited_too(server: ScriptedServer, orch: Orchestrator) -> None:
    result = paused(server, orch)
    server.add(reply(None, tool_call("nope")), reply("ok"))
    orch.resume_sync(result.thread_id, confirmed=False)
    statuses = [(r["tool"], r["status"]) for r in orch.approvals.tool_calls(result.thread_id)]
    assert statuses == [("get_weather", "success"), ("delete_file", "rejected"), ("nope", "refused")]


def test_sqlite_utils_reads_the_audit_tables(server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    db = sqlite_db
    result = paused(server, Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model]))
    cli = Path(sys.executable).parent / "sqlite-utils"
    out = subprocess.run([str(cli), "rows", str(db), "tool_calls"], capture_output=True, text=True, check=True)
    [row] = json.loads(out.stdout)
    assert row["thread_id"] == result.thread_id and row["tool"] == "get_weather"
    out = subprocess.run([str(cli), "rows", str(db), "inbox"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)[0]["question"] == QUESTION


# -- one call per pause -------------------------------------------------------------------------

def test_one_call_per_pause_asks_about_each_gated_call_in_turn(
    server: ScriptedServer, model: ModelConfig, db: Path
) -> None:
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model],
                        one_call_per_pause=True, ask_model_to_confirm=False)
    server.add(reply(None, tool_call("delete_file", path="/a"), tool_call("delete_file", path="/b")))
    first = orch.run_sync("delete both")
    assert first.checkpoint is not None
    assert [a["args"] for a in first.checkpoint.request["action_requests"]] == [{"path": "/a"}]
    second = orch.resume_sync(first.checkpoint, decisions=[{"type": "approve"}])
    assert second.checkpoint is not None
    assert [a["args"] for a in second.checkpoint.request["action_requests"]] == [{"path": "/b"}]
    assert second.checkpoint.interrupt_id != first.checkpoint.interrupt_id
    assert CALLS == [("delete_file", {"path": "/a"})]  # approved calls run as they are decided
    server.add(reply("Deleted /a; kept /b."))
    done = orch.resume_sync(second.checkpoint, decisions=[{"type": "reject"}])
    assert done.response == "Deleted /a; kept /b."
    assert [r["result"] for r in done.tool_calls] == ["deleted /a", "Action denied by user."]
    assert [d["decision"] for d in orch.approvals.decisions()] == ["approve", "reject"]


# -- at most once across a crash ----------------------------------------------------------------

def test_a_call_killed_after_its_claim_is_not_run_again_and_the_model_is_told(
    server: ScriptedServer, db: Path, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.log"
    server.add(reply(None, tool_call("transfer", amount=100)), reply("Transfer?"))
    child = subprocess.run([sys.executable, str(Path(__file__).parent / "claim_child.py"), str(db),
                            server.url, str(effects), "run"], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    thread_id = child.stdout.strip()
    server.add(reply("I could not confirm the transfer."))
    child = subprocess.run([sys.executable, str(Path(__file__).parent / "claim_child.py"), str(db),
                            server.url, str(effects), "approve", thread_id],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr  # killed inside the tool, after the claim
    assert effects.read_text() == "transfer 100\n"

    orch = Orchestrator(claim_tools(effects), confirm_required=["transfer"], db=db,
                        models=[server.model_config(label="primary")])
    done = orch.resume_sync(thread_id)  # continue after the crash: nothing to decide again
    assert done.response == "I could not confirm the transfer."
    assert effects.read_text() == "transfer 100\n"  # not run again
    told = server.requests[-1].messages[-1]
    assert told["role"] == "tool" and told["content"].startswith(
        "Outcome unknown: the call to 'transfer' was started before an interruption")
    [row] = orch.approvals.tool_calls(thread_id)
    assert row["status"] == "unknown"


def claim_tools(effects: Path) -> list[Any]:
    from claim_child import make_transfer

    return [make_transfer(effects, kill=False)]


def test_a_result_lost_before_its_checkpoint_is_replayed_from_the_ledger(
    server: ScriptedServer, context: LoopContext, db: Path
) -> None:
    server.add(reply(None, tool_call("add", a=2, b=3)), reply("5"))
    config: Any = {"configurable": {"thread_id": "lost"}}
    with open_saver(db) as saver, open_ledger(db) as ledger:
        ctx = replace(context, ledger=ledger)
        graph = compile_graph(saver)
        graph.invoke({"messages": [HumanMessage("add")]}, config, context=ctx, interrupt_before=["run_tool"])
        # the tool ran and the ledger has its result, but the process died before the checkpoint
        entry = call_entry_for(config, "call_1_0", "add", {"a": 2, "b": 3})
        assert ledger.claim_call(entry) is None
        ledger.finish_call("lost", "call_1_0", "success", duration_ms=1.0, result="5")
        out = graph.invoke(None, config, context=ctx)
    assert CALLS == []  # replayed, not run
    assert [m.content for m in out["messages"] if isinstance(m, ToolMessage)] == ["5"]
    assert out["messages"][-1].content == "5"


def call_entry_for(config: Any, call_id: str, tool: str, args: dict[str, object]) -> Any:
    return {"thread_id": config["configurable"]["thread_id"], "call_id": call_id, "round": 1, "tool": tool,
            "args": args, "status": "running", "started_at": "2026-01-01T00:00:00+00:00",
            "duration_ms": None, "model": "primary", "user_id": None, "user_role": "user",
            "result_chars": None}


def test_kept_results_go_when_the_next_round_claims_a_call(db: Path | str) -> None:
    config: Any = {"configurable": {"thread_id": "kept"}}
    with open_ledger(db) as ledger:
        for call_id in ("a1", "a2"):  # two calls of round 1, the second still running
            assert ledger.claim_call(call_entry_for(config, call_id, "add", {})) is None
        ledger.finish_call("kept", "a1", "success", result="1")
        assert ledger.claim_call(call_entry_for(config, "a1", "add", {})) is not None  # a re-claim keeps it
        assert ledger.result("kept", "a1") == "1"
        assert ledger.claim_call({**call_entry_for(config, "b1", "add", {}), "round": 2}) is None
        ledger.finish_call("kept", "b1", "success", result="2")
        assert (ledger.result("kept", "a1"), ledger.result("kept", "b1")) == (None, "2")


def test_approvals_need_a_sqlite_file(model: ModelConfig) -> None:
    from graphloop.graph import memory_saver

    with pytest.raises(ConfigurationError, match="approvals live in the database"):
        _ = Orchestrator(TOOLS, db=memory_saver(), models=[model]).approvals


def test_unknown_tools_in_allowed_decisions_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"allowed_decisions names unknown tools \['rm'\]"):
        Orchestrator(TOOLS, allowed_decisions={"rm": ["approve"]})
    with pytest.raises(ConfigurationError, match=r"allowed_decisions\['add'\]=\['maybe'\]"):
        Orchestrator(TOOLS, allowed_decisions={"add": ["maybe"]})  # type: ignore[list-item]


def test_a_database_with_newer_graphloop_tables_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    with open_ledger(db) as ledger:
        ledger.grant("ann", "add", "allow")
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE graphloop_meta SET value = '7' WHERE key = 'schema_version'")
    with pytest.raises(ConfigurationError, match=r"graphloop tables are schema version 7, written by a newer "
                       r"graphloop; this one knows version 1: upgrade graphloop"):
        Approvals(db).rules("ann")
