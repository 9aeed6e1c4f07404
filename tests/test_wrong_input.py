"""Wrong input through the Orchestrator and a compiled graph: refused before anything is read or
stored, in one line that names it, with the thread on the error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from graphloop.graph import (
    ConfigurationError,
    Finished,
    InvalidDecisionError,
    LoopContext,
    ModelConfig,
    Orchestrator,
    ThreadBusyError,
    compile_graph,
    memory_saver,
)
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import CALLS, TOOLS


def paused(server: ScriptedServer, db: Path) -> tuple[Orchestrator, Any]:
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"))
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[server.model_config()])
    result = orch.run_sync("delete /tmp/x", thread_id="t")
    assert result.checkpoint is not None
    return orch, result.checkpoint


@pytest.mark.parametrize("confirmed", ["no", "yes", 1, 0, [True]])
def test_a_confirmed_that_is_not_true_or_false_runs_nothing(sqlite_db: Path, confirmed: Any) -> None:
    with ScriptedServer(strict=True) as server:
        orch, checkpoint = paused(server, sqlite_db)
        with pytest.raises(InvalidDecisionError, match="must be True .* or False") as refused:
            orch.resume_sync(checkpoint, confirmed=confirmed)
        assert refused.value.thread_id == "t"
        assert CALLS == [] and orch.approvals.decisions("t") == []
        server.add(reply("Not deleted."))
        assert orch.resume_sync(checkpoint, confirmed=False).response == "Not deleted."  # still answerable


@pytest.mark.parametrize("decisions", ["approve", {"type": "approve"}, b"approve", 3])
def test_decisions_that_are_not_a_list_are_refused(sqlite_db: Path, decisions: Any) -> None:
    with ScriptedServer(strict=True) as server:
        orch, checkpoint = paused(server, sqlite_db)
        with pytest.raises(InvalidDecisionError, match="must be a list with one decision per call"):
            orch.resume_sync(checkpoint, decisions=decisions)
        assert CALLS == []
        server.add(reply("Not deleted."))
        assert orch.resume_sync(checkpoint, confirmed=False).response == "Not deleted."


def test_two_kinds_of_answer_at_once_are_a_resume_error_naming_the_thread(sqlite_db: Path) -> None:
    with ScriptedServer(strict=True) as server:
        orch, checkpoint = paused(server, sqlite_db)
        with pytest.raises(InvalidDecisionError, match="pass one of confirmed=, decisions= or answer=") as refused:
            orch.resume_sync(checkpoint, confirmed=True, decisions=[{"type": "approve"}])
        assert refused.value.thread_id == "t" and CALLS == []


@pytest.mark.parametrize(("call", "option"), [("run", "thread_idd"), ("run", "confirmd"), ("resume", "confirmd")])
def test_an_unknown_option_is_refused_by_name(sqlite_db: Path, call: str, option: str) -> None:
    with ScriptedServer(strict=True) as server:
        orch, checkpoint = paused(server, sqlite_db)
        with pytest.raises(ConfigurationError, match=rf"{call}\(\) got unknown options \['{option}'\]"):
            if call == "run":
                orch.run_sync("again", **{option: True})  # pyright: ignore[reportArgumentType]
            else:
                orch.resume_sync(checkpoint, **{option: True})  # pyright: ignore[reportArgumentType]
        assert len(server.requests) == 2  # nothing more was asked


@pytest.mark.parametrize("thread", [None, 123, ["t"]])
def test_a_thread_id_that_is_not_text_is_named_not_blamed_on_the_database(sqlite_db: Path, thread: Any) -> None:
    with ScriptedServer(strict=True) as server:
        orch = Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()])
        with pytest.raises(ConfigurationError, match=r"is not a thread's id"):
            orch.resume_sync(thread, confirmed=True)
        if thread is not None:  # no thread_id at all starts a new thread
            with pytest.raises(ConfigurationError, match=r"is not a thread's id"):
                orch.run_sync("1+2", thread_id=thread)
        assert server.requests == []


def test_a_second_run_of_a_thread_started_inside_the_first_ones_loop_is_refused(sqlite_db: Path) -> None:
    with ScriptedServer(strict=True) as server:
        server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
        orch = Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()])

        async def nested() -> str:
            async for event in orch.stream("1+2", thread_id="t", tokens=False):
                if isinstance(event, Finished):  # the run is over, its thread given back
                    break
                with pytest.raises(ThreadBusyError, match="run by this same task") as busy:
                    await orch.run("5+5", thread_id="t")
                assert busy.value.thread_id == "t"
            return "done"

        assert asyncio.run(nested()) == "done"
        assert CALLS == [("add", {"a": 1, "b": 2})]  # the outer run's call, once
        assert len(server.requests) == 2


def test_a_model_cfg_without_its_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="api_url and model_name are required"):
        ModelConfig.coerce({"label": "x"})


@pytest.mark.parametrize(("policy", "named"), [
    ({"confirm_allow": "add"}, "confirm_allow='add'"),
    ({"tool_list": "add"}, "tool_list='add'"),
    ({"max_rounds": 0}, "max_rounds=0"),
    ({"max_rounds": "2"}, "max_rounds='2'"),
    ({"respond_with_final": "yes"}, "respond_with_final='yes'"),
    ({"user_role": "nobody"}, "user_role='nobody' is not a configured role"),
    ({"tool_list": ["nope"]}, "tool_list names unknown tools \\['nope'\\]"),
])
def test_a_compiled_graph_refuses_a_policy_it_cannot_apply(model: ModelConfig, policy: dict[str, Any], named: str) -> None:
    context = LoopContext.create(models=[model], tools=TOOLS, roles={"user": "*"})
    with pytest.raises(ConfigurationError, match=named):
        compile_graph().invoke({"messages": [HumanMessage("hi")], "policy": policy}, context=context)


def test_a_partial_policy_that_brings_its_gate_is_stored_whole(server: ScriptedServer, model: ModelConfig) -> None:
    context = LoopContext.create(models=[model], tools=TOOLS, confirm_required=["delete_file"])
    server.add(reply(None, tool_call("delete_file", path="/x")), reply("May I?"))
    graph = compile_graph(memory_saver())
    config: Any = {"configurable": {"thread_id": "p"}}
    gate = {"tools": ["delete_file"], "gated": ["delete_file"], "decisions": {"delete_file": ["approve"]}}
    graph.invoke({"messages": [HumanMessage("rm")], "policy": {"gate": gate}}, config, context=context)
    policy = graph.get_state(config).values["policy"]
    assert policy["user_role"] == "user" and policy["max_rounds"] == 10 and policy["gate"] == gate
