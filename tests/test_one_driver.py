"""One driver per thread: two runs of one thread at once (a double submit, two tabs, two
workers) never both proceed. The second is refused before it reads anything, or waits when
asked to; every turn of the winner is saved. In one process, across processes (SQLite and
PostgreSQL), through the Orchestrator and the compiled graph."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from graphloop.graph import (
    LoopContext,
    Orchestrator,
    OrchestratorResult,
    ThreadBusyError,
    compile_graph,
    open_saver,
)
from graphloop.graph.testing import ScriptedReply, ScriptedServer, reply, tool_call

from conftest import CALLS, TOOLS

HERE = Path(__file__).parent


def answers_after(delay: float) -> Any:
    """A model that adds the numbers it is asked about, slowly (so runs overlap)."""
    def answer(body: dict[str, Any]) -> ScriptedReply:
        last = body["messages"][-1]
        if last["role"] == "tool":
            return reply(f"sum is {last['content']}")
        a, b = (int(x) for x in last["content"].split("+"))
        return reply(None, tool_call("add", a=a, b=b), delay=delay)
    return answer


def saved(db: Path | str, thread: str) -> list[Any]:
    """The thread's messages as saved in `db`."""
    with open_saver(db) as saver:
        return compile_graph(saver).get_state({"configurable": {"thread_id": thread}}).values["messages"]


def turns(messages: list[Any]) -> list[str]:
    return [m.text for m in messages if isinstance(m, HumanMessage)]


async def both(orch: Orchestrator, thread: str, wait: float = 0.0) -> list[OrchestratorResult | BaseException]:
    first = asyncio.create_task(orch.run("1+2", thread_id=thread, wait=wait))
    await asyncio.sleep(0.3)  # the first is inside its model call
    second = asyncio.create_task(orch.run("3+4", thread_id=thread, wait=wait))
    return await asyncio.gather(first, second, return_exceptions=True)


def test_a_second_run_of_a_running_thread_is_refused_and_the_first_loses_nothing(
    any_db: Path | str,
) -> None:
    with ScriptedServer(strict=True) as server:
        server.add(*[answers_after(1.0)] * 2)
        orch = Orchestrator(TOOLS, db=any_db, models=[server.model_config()])
        first, second = asyncio.run(both(orch, "t"))
        assert isinstance(first, OrchestratorResult) and first.response == "sum is 3"
        assert isinstance(second, ThreadBusyError)
        assert "'t' is being run by another caller" in str(second)
        assert len(server.requests) == 2  # the refused run asked no model
        history = saved(any_db, "t")
        assert turns(history) == ["1+2"] and CALLS == [("add", {"a": 1, "b": 2})]


def test_a_run_that_asks_to_wait_runs_after_the_first_and_both_turns_are_saved(sqlite_db: Path) -> None:
    with ScriptedServer(strict=True) as server:
        server.add(*[answers_after(0.5)] * 4)
        orch = Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()])
        first, second = asyncio.run(both(orch, "t", wait=30))
        assert isinstance(first, OrchestratorResult) and isinstance(second, OrchestratorResult)
        assert (first.response, second.response) == ("sum is 3", "sum is 7")
        history = saved(sqlite_db, "t")
        assert turns(history) == ["1+2", "3+4"]
        assert [m.text for m in history if isinstance(m, AIMessage) and m.text] == ["sum is 3", "sum is 7"]


def test_two_threads_of_one_database_run_at_once(sqlite_db: Path) -> None:
    with ScriptedServer(strict=True) as server:
        server.add(*[answers_after(0.5)] * 4)
        orch = Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()])

        async def two() -> list[OrchestratorResult]:
            return await asyncio.gather(orch.run("1+2", thread_id="a"), orch.run("3+4", thread_id="b"))

        assert sorted(r.response for r in asyncio.run(two())) == ["sum is 3", "sum is 7"]


def invoked_in_the_background(graph: Any, config: Any, context: LoopContext, server: ScriptedServer,
                              ) -> tuple[threading.Thread, dict[str, Any]]:
    """`graph.invoke` of "1+2" on another thread, once it holds its thread (its first model
    request has arrived); the final state lands in the dict under "state"."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["state"] = graph.invoke({"messages": [HumanMessage("1+2")]}, config, context=context)

    runner = threading.Thread(target=run)
    runner.start()
    while not server.requests:
        time.sleep(0.02)
    return runner, outcome


def test_the_compiled_graph_refuses_a_second_invoke_of_a_running_thread(sqlite_db: Path) -> None:
    with ScriptedServer(strict=True) as server, open_saver(sqlite_db) as saver:
        server.add(*[answers_after(1.0)] * 4)
        graph = compile_graph(saver)
        context = LoopContext.create(models=[server.model_config()], tools=TOOLS)
        config: Any = {"configurable": {"thread_id": "g"}}
        runner, outcome = invoked_in_the_background(graph, config, context, server)
        with pytest.raises(ThreadBusyError):
            graph.invoke({"messages": [HumanMessage("3+4")]}, config, context=context)
        runner.join()
        assert outcome["state"]["messages"][-1].text == "sum is 3"
        assert turns(graph.get_state(config).values["messages"]) == ["1+2"]
        waited = graph.invoke({"messages": [HumanMessage("3+4")]},
                              {"configurable": {"thread_id": "g", "wait_for_thread": 5}}, context=context)
        assert turns(waited["messages"]) == ["1+2", "3+4"]  # free again once the first is done


def child(db: Path | str, server: ScriptedServer, task: str, wait: float = 0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    return subprocess.Popen([sys.executable, str(HERE / "driver_child.py"), str(db), server.url, "t", task, str(wait)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def child_holding(db: Path | str, server: ScriptedServer, task: str = "1+2") -> subprocess.Popen[str]:
    """A second process running `task` on thread "t", once it holds the thread: it takes it
    before its first read, so its first model request means it has it."""
    running = child(db, server, task)
    while not server.requests:
        time.sleep(0.05)
    return running


def outcome_of(process: subprocess.Popen[str]) -> dict[str, str]:
    out, err = process.communicate(timeout=120)
    assert out.strip(), err
    return json.loads(out.strip().splitlines()[-1])


def test_another_process_is_refused_while_one_runs_the_thread(any_db: Path | str) -> None:
    with ScriptedServer(strict=True) as server:
        server.add(*[answers_after(3.0)] * 2)
        running = child_holding(any_db, server)
        orch = Orchestrator(TOOLS, db=any_db, models=[server.model_config()])
        with pytest.raises(ThreadBusyError):
            orch.run_sync("3+4", thread_id="t")
        assert outcome_of(running) == {"answer": "sum is 3"}
        history = saved(any_db, "t")
        assert turns(history) == ["1+2"]


def test_a_killed_driver_lets_go_of_its_thread_at_once(any_db: Path | str) -> None:
    with ScriptedServer(strict=True) as server:
        server.add(answers_after(5.0), *[answers_after(0)] * 2)
        running = child_holding(any_db, server)
        running.send_signal(signal.SIGKILL)
        running.communicate(timeout=30)
        orch = Orchestrator(TOOLS, db=any_db, models=[server.model_config()])
        # the thread was left mid-run: it is resumed, not refused as busy
        result = orch.resume_sync("t")
        assert result.response == "sum is 3"


def test_continuing_a_thread_another_process_runs_is_refused_not_reported_unknown(sqlite_db: Path) -> None:
    with ScriptedServer(strict=True) as server:
        server.add(*[answers_after(3.0)] * 2)
        running = child_holding(sqlite_db, server)
        orch = Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()])
        with pytest.raises(ThreadBusyError):
            orch.resume_sync("t")  # before: the running call's claim read as "Outcome unknown"
        assert outcome_of(running) == {"answer": "sum is 3"}
        assert [m.text for m in saved(sqlite_db, "t") if m.type == "tool"] == ["3"]
        assert [c["status"] for c in orch.approvals.tool_calls("t")] == ["success"]


def test_the_cli_says_so_in_one_line_or_waits_with_wait(sqlite_db: Path) -> None:
    from test_cli import invoke

    with ScriptedServer(strict=True) as server:
        server.add(*[answers_after(2.0)] * 4)
        running = child_holding(sqlite_db, server)
        args = ("--thread", "t", "--db", str(sqlite_db), "--tools", "conftest:TOOLS", "--model", "scripted")
        refused = invoke("run", "3+4", *args, server=server)
        assert refused.exit_code == 1 and "Traceback" not in refused.output
        [line] = refused.output.strip().splitlines()
        assert "thread 't' is being run by another caller" in line
        waited = invoke("run", "3+4", *args, "--wait", "60", server=server)
        assert waited.exit_code == 0, waited.output
        assert "sum is 7" in waited.output
        assert outcome_of(running) == {"answer": "sum is 3"}
        assert turns(saved(sqlite_db, "t")) == ["1+2", "3+4"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_tool_cannot_drive_the_thread_that_runs_it(sqlite_db: Path, kind: str) -> None:
    refusals: list[str] = []
    holder: dict[str, Orchestrator] = {}

    def reenter_sync(note: str) -> str:
        """Runs the thread it belongs to (it must not)."""
        try:
            holder["orch"].resume_sync("t")
        except ThreadBusyError as exc:
            refusals.append(str(exc))
        return f"noted {note}"

    async def reenter_async(note: str) -> str:
        """Runs the thread it belongs to (it must not)."""
        try:
            await holder["orch"].resume("t")
        except ThreadBusyError as exc:
            refusals.append(str(exc))
        return f"noted {note}"

    tool = reenter_sync if kind == "sync" else reenter_async
    with ScriptedServer(strict=True) as server:
        server.add(reply(None, tool_call(tool.__name__, note="x")), reply("done"))
        holder["orch"] = Orchestrator([tool], db=sqlite_db, models=[server.model_config()])
        assert holder["orch"].run_sync("go", thread_id="t").response == "done"
    assert len(refusals) == 1 and "'t' is being run by another caller" in refusals[0]
    assert [m.text for m in saved(sqlite_db, "t") if m.type == "tool"] == ["noted x"]  # not "Outcome unknown"


def test_prune_leaves_a_thread_a_run_is_continuing(sqlite_db: Path) -> None:
    from datetime import timedelta

    with ScriptedServer(strict=True) as server:
        server.add(*[answers_after(0)] * 2, *[answers_after(2.0)] * 2)
        orch = Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()])
        orch.run_sync("1+2", thread_id="old")
        time.sleep(1.2)  # "old" is now older than the cut-off, and finished
        going_on = threading.Thread(target=orch.run_sync, args=("3+4",), kwargs={"thread_id": "old"})
        going_on.start()
        while len(server.requests) < 3:  # the second turn holds the thread
            time.sleep(0.02)
        report = orch.prune_sync(timedelta(seconds=1))
        going_on.join()
    assert report.deleted == [] and report.kept == 1
    assert turns(saved(sqlite_db, "old")) == ["1+2", "3+4"]


@pytest.mark.postgres
def test_a_dropped_postgres_session_gives_its_holds_back_to_this_process(postgres_db: str) -> None:
    import psycopg

    from graphloop.checkpointers.drivers import drivers_at

    drivers = drivers_at(postgres_db, postgres=True)
    with drivers.drive("t"):
        with psycopg.connect(postgres_db, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            ).fetchall()
            assert dropped == [(True,)]  # the one session holding "t" is gone, and its lock with it
            with drivers.drive("u"):  # the next use reconnects and takes "t" back
                with pytest.raises(ThreadBusyError):
                    with drivers_at(postgres_db + "?application_name=other", postgres=True).drive("t"):
                        pass


@pytest.mark.parametrize("wait", [-5, float("nan"), float("inf"), "soon"])
def test_a_wait_that_is_not_seconds_is_refused_in_one_line(sqlite_db: Path, wait: Any) -> None:
    from graphloop.graph import ConfigurationError

    with ScriptedServer(strict=True) as server:
        orch = Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config()])
        with pytest.raises(ConfigurationError, match="wait must be a number of seconds, 0 or more"):
            orch.run_sync("1+2", thread_id="t", wait=wait)
        with pytest.raises(ConfigurationError, match="thread_id '' is empty"):
            orch.run_sync("1+2", thread_id="")
        assert server.requests == []


def test_a_state_update_is_refused_while_a_run_holds_the_thread(sqlite_db: Path) -> None:
    with ScriptedServer(strict=True) as server, open_saver(sqlite_db) as saver:
        server.add(*[answers_after(1.0)] * 2)
        graph = compile_graph(saver)
        context = LoopContext.create(models=[server.model_config()], tools=TOOLS)
        config: Any = {"configurable": {"thread_id": "u"}}
        runner, _ = invoked_in_the_background(graph, config, context, server)
        with pytest.raises(ThreadBusyError):  # it would write a checkpoint beside the run's
            graph.update_state(config, {"question": "forged"})
        runner.join()
        assert graph.get_state(config).values["messages"][-1].text == "sum is 3"
