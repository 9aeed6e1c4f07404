"""A database shared with another LangGraph application: graphloop touches only its own threads.

The other application is a plain `StateGraph` with a `messages` channel, compiled with
langgraph's own saver on the same SQLite file (or PostgreSQL database). graphloop refuses its
threads with `ForeignThreadError` before anything runs, on every way in, and retention and
the inbox pass them by.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Generator
from contextlib import contextmanager
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import interrupt

from graphloop.graph import (
    ForeignThreadError,
    LoopContext,
    LoopState,
    ModelConfig,
    Orchestrator,
    build_graph,
    compile_graph,
    open_async_saver,
    open_saver,
)
from graphloop.graph.serve import graph as served_graph
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import SECRET, TOOLS
from test_cli import invoke

REFUSED = r"thread 'user-42' was not created by graphloop: .* pick another thread_id, or give graphloop a database"
FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("paused-*.db"))


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def chatbot(state: Chat) -> dict[str, list[AnyMessage]]:
    if state["messages"][-1].text == "pause":  # the other application's own human-in-the-loop
        interrupt({"action_requests": [{"name": "wire_money", "args": {}, "description": "May I?"}]})
    return {"messages": [AIMessage("the other application's answer")]}


@contextmanager
def other_app(db: Path | str) -> Generator[CompiledStateGraph[Any, Any, Any, Any]]:
    """Another application: its own graph, on langgraph's saver for the same database."""
    builder = StateGraph(Chat)
    builder.add_node("chatbot", chatbot)  # pyright: ignore[reportUnknownMemberType]
    builder.add_edge(START, "chatbot")
    builder.add_edge("chatbot", END)
    with _langgraph_saver(db) as saver:
        yield builder.compile(checkpointer=saver)  # pyright: ignore[reportUnknownMemberType]


@contextmanager
def _langgraph_saver(db: Path | str) -> Generator[BaseCheckpointSaver[Any]]:
    if isinstance(db, Path):
        from langgraph.checkpoint.sqlite import SqliteSaver

        with SqliteSaver.from_conn_string(str(db)) as saver:
            yield saver
        return
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(db) as saver:
        saver.setup()
        yield saver


def config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def write_other_threads(db: Path | str, *thread_ids: str, text: str = "hello from the other application") -> None:
    with other_app(db) as app:
        for thread_id in thread_ids:
            app.invoke({"messages": [HumanMessage(text)]}, config(thread_id))  # pyright: ignore[reportUnknownMemberType]


def other_history(db: Path | str, thread_id: str) -> list[tuple[str, list[str]]]:
    """The other application's view of its thread: each checkpoint's id and messages."""
    with other_app(db) as app:
        return [(str(s.config.get("configurable", {})["checkpoint_id"]), [m.text for m in s.values["messages"]])
                for s in app.get_state_history(config(thread_id))]  # pyright: ignore[reportUnknownMemberType]


@pytest.fixture
def db(any_db: Path | str) -> Path | str:
    return any_db


def test_a_run_on_another_applications_thread_is_refused_before_anything_runs(
        server: ScriptedServer, model: ModelConfig, db: Path | str) -> None:
    write_other_threads(db, "user-42")
    before = other_history(db, "user-42")
    orch = Orchestrator(TOOLS, db=db, models=[model])
    with pytest.raises(ForeignThreadError, match=REFUSED) as refused:
        orch.run_sync("hi", thread_id="user-42")
    assert "\n" not in str(refused.value)
    assert server.requests == [] and other_history(db, "user-42") == before
    server.add(reply("a thread of graphloop's own"))  # the database itself is fine for graphloop
    assert orch.run_sync("hi", thread_id="user-43").response == "a thread of graphloop's own"


@pytest.mark.parametrize("options", [{}, {"confirmed": True}, {"decisions": [{"type": "reject"}]},
                                     {"answer": "yes"}], ids=["continue", "confirm", "decide", "answer"])
def test_resuming_or_deciding_on_another_applications_thread_is_refused(
        server: ScriptedServer, model: ModelConfig, db: Path | str, options: dict[str, Any]) -> None:
    write_other_threads(db, "user-42")
    before = other_history(db, "user-42")
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    with pytest.raises(ForeignThreadError, match=REFUSED):
        orch.resume_sync("user-42", **options)
    assert server.requests == [] and other_history(db, "user-42") == before
    assert orch.approvals.decisions() == [] and orch.approvals.tool_calls() == []


def test_prune_deletes_only_graphloops_finished_threads(
        server: ScriptedServer, model: ModelConfig, db: Path | str) -> None:
    write_other_threads(db, "user-42", "done-1")
    before = {t: other_history(db, t) for t in ("user-42", "done-1")}
    orch = Orchestrator(TOOLS, db=db, models=[model])
    server.add(reply("finished"))
    ours = orch.run_sync("old and finished").thread_id
    time.sleep(1.2)
    report = orch.prune_sync(timedelta(seconds=1), audit=True)
    assert report.deleted == [ours] and report.kept == 0
    assert {t: other_history(db, t) for t in before} == before


def test_rebuilding_the_inbox_passes_another_applications_threads_by(
        server: ScriptedServer, model: ModelConfig, db: Path | str) -> None:
    write_other_threads(db, "user-42")
    write_other_threads(db, "user-7", text="pause")  # paused at the other application's own gate
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    server.add(reply(None, tool_call("delete_file", path="/x")), reply("May I delete /x?"))
    paused = orch.run_sync("delete /x").thread_id
    assert orch.rebuild_inbox_sync() == 1
    assert [e["thread_id"] for e in orch.approvals.pending()] == [paused]


def test_a_compiled_graph_refuses_another_applications_thread_on_every_way_in(
        server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    write_other_threads(sqlite_db, "user-42")
    before = other_history(sqlite_db, "user-42")
    context = LoopContext.create(models=[model], tools=TOOLS)
    start = LoopState(messages=[HumanMessage("hi")])
    with open_saver(sqlite_db) as saver:
        graph = compile_graph(saver)
        for way_in in (lambda: graph.invoke(start, config("user-42"), context=context),  # pyright: ignore[reportUnknownMemberType, reportUnknownLambdaType]
                       lambda: list(graph.stream(start, config("user-42"), context=context)),
                       lambda: graph.get_state(config("user-42")),
                       lambda: list(graph.get_state_history(config("user-42"))),
                       lambda: graph.update_state(config("user-42"), start)):
            with pytest.raises(ForeignThreadError, match=REFUSED):
                way_in()

    async def run_async() -> None:
        async with open_async_saver(sqlite_db) as saver:
            with pytest.raises(ForeignThreadError, match=REFUSED):
                await compile_graph(saver).ainvoke(start, config("user-42"), context=context)  # pyright: ignore[reportUnknownMemberType]

    asyncio.run(run_async())
    assert server.requests == [] and other_history(sqlite_db, "user-42") == before


def test_a_compiled_graph_stamps_its_own_threads_and_continues_them(
        server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    context = LoopContext.create(models=[model], tools=TOOLS)
    server.add(reply("one"), reply("two"))
    with open_saver(sqlite_db) as saver:
        graph = compile_graph(saver)
        for text in ("first", "second"):
            graph.invoke(LoopState(messages=[HumanMessage(text)]), config("mine"), context=context)  # pyright: ignore[reportUnknownMemberType]
        stamps = {c.metadata.get("graphloop") for c in saver.list(config("mine"))}
        assert [m.text for m in graph.get_state(config("mine")).values["messages"]] == [
            "first", "one", "second", "two"]
    assert stamps == {version("graphloop")}


def test_the_served_graph_refuses_another_applications_thread(sqlite_db: Path) -> None:
    write_other_threads(sqlite_db, "user-42")
    with open_saver(sqlite_db) as saver, pytest.raises(ForeignThreadError, match=REFUSED):
        served_graph.copy({"checkpointer": saver}).get_state(config("user-42"))


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_threads_of_earlier_releases_are_still_graphloops(fixture: Path, tmp_path: Path) -> None:
    db = tmp_path / "upgraded.db"
    shutil.copy(fixture, db)
    with sqlite3.connect(db) as conn:
        threads = conn.execute("SELECT COUNT(DISTINCT thread_id) FROM checkpoints").fetchone()[0]
    conn.close()
    report = Orchestrator(TOOLS, db=db).prune_sync(timedelta(0))  # every one of them paused
    assert threads >= 3 and report.deleted == [] and report.kept == threads
    with open_saver(db) as saver:  # unstamped checkpoints, read through today's graph
        assert compile_graph(saver).get_state(config("approve")).next == ("interrupt_for_confirm",)


def test_a_thread_stopped_before_its_first_step_by_an_unstamped_graph_is_still_graphloops(sqlite_db: Path) -> None:
    with open_saver(sqlite_db) as saver:
        by_hand = build_graph().compile(checkpointer=saver, interrupt_before=["compact"])  # pyright: ignore[reportUnknownMemberType]
        by_hand.invoke({"messages": [HumanMessage("hi")]}, config("early"))  # pyright: ignore[reportUnknownMemberType]
        assert "graphloop" not in (saver.get_tuple(config("early")) or pytest.fail()).metadata
        assert compile_graph(saver).get_state(config("early")).next == ("compact",)


def test_the_cli_refuses_another_applications_thread_and_prune_leaves_it(
        server: ScriptedServer, tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    write_other_threads(db, "user-42")
    before = other_history(db, "user-42")
    time.sleep(1.2)
    env = {"PATH": "/usr/bin:/bin", "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": SECRET,
           "PYTHONPATH": str(Path(__file__).parent), "COLUMNS": "400", "NO_COLOR": "1"}
    cli = Path(sys.executable).parent / "graphloop"

    def graphloop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(cli), *args, "--db", str(db)], capture_output=True, text=True,
                              timeout=120, env=env)

    def graphloop_here(*args: str) -> subprocess.CompletedProcess[str]:
        """The same command in this process (typer's runner): no interpreter to start."""
        result = invoke(*args, "--db", str(db), server=server, COLUMNS="400", PYTHONPATH=env["PYTHONPATH"])
        return subprocess.CompletedProcess(list(args), result.exit_code, result.output, "")

    for command, run in ((["run", "hi", "--model", "scripted", "--thread", "user-42"], graphloop),
                         (["approve", "user-42", "--model", "scripted"], graphloop_here),
                         (["history", "user-42"], graphloop_here)):
        result = run(*command)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stdout.startswith("error: ForeignThreadError: thread 'user-42' was not created by graphloop")
        assert len(result.stdout.strip().splitlines()) == 1 and "Traceback" not in result.stdout + result.stderr
    pruned = graphloop_here("prune", "--older-than", "1s")
    assert pruned.returncode == 0 and "deleted 0 finished thread(s); 0 kept" in pruned.stdout
    assert server.requests == [] and other_history(db, "user-42") == before



class PolicyState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    policy: dict[str, str]


def test_another_application_with_a_policy_channel_of_its_own_is_still_refused(
        server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    builder = StateGraph(PolicyState)
    builder.add_node("chatbot", lambda state: {"messages": [AIMessage("theirs")], "policy": {"tier": "gold"}})
    builder.add_edge(START, "chatbot")
    with SqliteSaver.from_conn_string(str(sqlite_db)) as saver:
        builder.compile(checkpointer=saver).invoke({"messages": [HumanMessage("hi")]}, config("policy-1"))
    time.sleep(1.2)
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[model])
    with pytest.raises(ForeignThreadError):
        orch.run_sync("hi", thread_id="policy-1")
    assert orch.prune_sync(timedelta(seconds=1)).deleted == [] and server.requests == []
