"""Errors carry what they are about as attributes, raised through the real paths: the thread,
each model's last failure (never its key), the token sizes."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from graphloop.graph import (
    AlreadyDecidedError,
    ContextBudgetError,
    Decision,
    ForeignThreadError,
    InvalidDecisionError,
    ModelCallError,
    ModelUnavailableError,
    NotPausedError,
    Orchestrator,
    OrchestratorResult,
    PendingCall,
    ThreadBusyError,
    ThreadPausedError,
    UnknownThreadError,
    open_ledger,
)
from graphloop.graph.testing import ScriptedServer, error, reply, tool_call
from graphloop.nodes.audit import decision_entries
from graphloop.nodes.confirm import check_decisions
from graphloop.nodes.tokens import REPLY_PRIMING

from conftest import SECRET, TOOLS


@pytest.fixture
def orch(server: ScriptedServer, sqlite_db: Path) -> Orchestrator:
    return Orchestrator(TOOLS, confirm_required=["delete_file"], db=sqlite_db,
                        models=[server.model_config(label="primary", api_key=SECRET)])


def paused(server: ScriptedServer, orch: Orchestrator) -> OrchestratorResult:
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("Shall I delete /tmp/x?"))
    result = orch.run_sync("delete /tmp/x")
    assert result.checkpoint is not None
    return result


@pytest.fixture
def backup() -> Iterator[ScriptedServer]:
    with ScriptedServer(model="backup-model", strict=True) as srv:
        yield srv
        srv.assert_all_used()


def test_every_model_failing_gives_each_labels_last_error_without_its_key(
        server: ScriptedServer, backup: ScriptedServer, sqlite_db: Path) -> None:
    server.add(error(503, f"overloaded; the key {SECRET} must wait"))
    backup.add(error(500, "backup down"))
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[
        server.model_config(label="primary", api_key=SECRET), backup.model_config(label="backup", api_key=SECRET)])
    with pytest.raises(ModelUnavailableError) as caught:
        orch.run_sync("hi")
    failures = caught.value.failures
    assert [label for label, _ in failures] == ["primary", "backup"]
    assert all(isinstance(e, ModelCallError) and e.label == label for label, e in failures)
    assert [e.status for _, e in failures] == [503, 500]
    assert "backup down" in str(dict(failures)["backup"]) and "****" in str(dict(failures)["primary"])
    assert SECRET not in repr(failures) + "".join(str(e) for _, e in failures)
    assert all(e.__cause__ is None and e.__context__ is None for _, e in failures)  # no server exception


def test_a_request_over_the_budget_says_what_it_needs_and_what_it_may_have(
        server: ScriptedServer, sqlite_db: Path) -> None:
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config(context_k=1)])
    with pytest.raises(ContextBudgetError) as caught:
        orch.run_sync("go", system_prompt="word " * 2000)
    sizes = [int(n) for n in re.findall(r"\((\d+) tokens\)", str(caught.value))]
    assert caught.value.budget == 750 and f"budget of {caught.value.budget} tokens" in str(caught.value)
    assert caught.value.needed == sum(sizes) + REPLY_PRIMING > 750
    assert server.requests == []


def test_a_thread_another_caller_runs_is_named_by_the_busy_error(
        server: ScriptedServer, orch: Orchestrator, sqlite_db: Path) -> None:
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with open_ledger(sqlite_db) as ledger, ledger.drivers.drive("t-busy"):
            held.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        with pytest.raises(ThreadBusyError) as caught:
            orch.run_sync("hi", thread_id="t-busy")
    finally:
        done.set()
        holder.join()
    assert caught.value.thread_id == "t-busy"


class _Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def _chatbot(state: _Chat) -> dict[str, list[AnyMessage]]:
    return {"messages": [AIMessage("the other application's answer")]}


def test_another_applications_thread_is_named_by_the_foreign_thread_error(
        server: ScriptedServer, orch: Orchestrator, sqlite_db: Path) -> None:
    builder = StateGraph(_Chat)
    builder.add_node("chatbot", _chatbot)  # pyright: ignore[reportUnknownMemberType]
    builder.add_edge(START, "chatbot")
    builder.add_edge("chatbot", END)
    with SqliteSaver.from_conn_string(str(sqlite_db)) as saver:
        builder.compile(checkpointer=saver).invoke(  # pyright: ignore[reportUnknownMemberType]
            {"messages": [HumanMessage("hello")]}, {"configurable": {"thread_id": "user-42"}})
    with pytest.raises(ForeignThreadError) as caught:
        orch.run_sync("hi", thread_id="user-42")
    assert caught.value.thread_id == "user-42"


def test_a_lost_race_names_its_thread_and_the_recorded_decision(
        server: ScriptedServer, orch: Orchestrator, sqlite_db: Path) -> None:
    result = paused(server, orch)
    [entry] = orch.approvals.pending()
    shown = [PendingCall(id=c["id"], name=c["name"], args=c["args"]) for c in entry["calls"]]  # type: ignore[typeddict-item]
    with open_ledger(sqlite_db) as ledger:  # another server recorded its decision a moment earlier
        ledger.claim_decisions(decision_entries(result.thread_id, entry["interrupt_id"], shown,
                                                [Decision(type="reject")], decided_by="bob"))
    with pytest.raises(AlreadyDecidedError) as caught:
        orch.resume_sync(result.thread_id, confirmed=True, decided_by="ann")
    assert caught.value.thread_id == result.thread_id
    assert caught.value.decisions[0]["decided_by"] == "bob"


def test_checked_decisions_name_the_thread_they_were_checked_for() -> None:
    call = PendingCall(id="c1", name="delete_file", args={"path": "/a"})
    with pytest.raises(InvalidDecisionError) as caught:
        check_decisions({"decisions": []}, [call], thread_id="t-7")
    assert caught.value.thread_id == "t-7"
    with pytest.raises(InvalidDecisionError) as unnamed:
        check_decisions({"decisions": []}, [call])
    assert unnamed.value.thread_id is None


# raised where the Orchestrator resumes and runs


def test_a_resume_of_an_unknown_thread_names_it(orch: Orchestrator) -> None:
    with pytest.raises(UnknownThreadError) as caught:
        orch.resume_sync("nope", confirmed=True)
    assert caught.value.thread_id == "nope"


def test_a_resume_of_a_finished_thread_names_it(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(reply("done"))
    finished = orch.run_sync("hi")
    with pytest.raises(NotPausedError) as caught:
        orch.resume_sync(finished.thread_id, confirmed=True)
    assert caught.value.thread_id == finished.thread_id


def test_decisions_that_do_not_fit_the_pause_name_its_thread(server: ScriptedServer, orch: Orchestrator) -> None:
    result = paused(server, orch)
    with pytest.raises(InvalidDecisionError) as caught:
        orch.resume_sync(result.thread_id, decisions=[{"type": "approve"}, {"type": "approve"}])
    assert caught.value.thread_id == result.thread_id


def test_a_new_task_for_a_thread_stopped_by_an_error_names_it(server: ScriptedServer, orch: Orchestrator) -> None:
    server.add(error(500))
    with pytest.raises(ModelUnavailableError):
        orch.run_sync("one", thread_id="stopped")
    with pytest.raises(ThreadPausedError) as caught:
        orch.run_sync("something else", thread_id="stopped")
    assert caught.value.thread_id == "stopped"
