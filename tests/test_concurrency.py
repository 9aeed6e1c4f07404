"""Many threads at once in one process: 200 concurrent runs, each with tool rounds, finish
without "database is locked" (SQLite in WAL mode with a busy timeout) and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from graphloop.graph import ModelConfig, Orchestrator
from graphloop.graph.testing import ScriptedReply, ScriptedServer, reply, tool_call

THREADS = 200
ROUNDS = 2


def lookup(key: str) -> str:
    """Look a key up."""
    return f"{key}: " + "x" * 2000


def by_conversation(body: dict[str, Any]) -> ScriptedReply:
    """Tool rounds until ROUNDS results are in, then the answer; the same for every thread."""
    done = sum(1 for m in body["messages"] if m["role"] == "tool")
    task = next(m["content"] for m in body["messages"] if m["role"] == "user")
    if done >= ROUNDS:
        return reply(f"answer for {task}")
    return reply(None, tool_call("lookup", key=f"{task}-{done}"))


@pytest.fixture
def db(any_db: Path | str) -> Path | str:
    return any_db


def test_two_hundred_threads_run_at_once_without_lock_errors(db: Path | str) -> None:
    with ScriptedServer([by_conversation] * (THREADS * (ROUNDS + 1)), strict=True) as server:
        model = ModelConfig(label="primary", api_url=server.url, model_name="scripted", max_retries=0)
        orch = Orchestrator([lookup], db=db, models=[model])

        async def all_at_once() -> list[str]:
            results = await asyncio.gather(*(orch.run(f"task {i}", thread_id=f"t{i}") for i in range(THREADS)))
            return [r.response for r in results]

        started = time.monotonic()
        answers = asyncio.run(all_at_once())
        elapsed = time.monotonic() - started
        server.assert_all_used()
    assert answers == [f"answer for task {i}" for i in range(THREADS)]
    calls = orch.approvals.tool_calls()
    assert len(calls) == THREADS * ROUNDS and {c["status"] for c in calls} == {"success"}
    print(f"{THREADS} threads x {ROUNDS} tool rounds at once on {type(db).__name__}: {elapsed:.1f} s")


def test_runs_at_once_share_one_session_and_the_last_to_finish_closes_it(db: Path | str) -> None:
    from psycopg_pool import PoolClosed

    from graphloop.graph.builder import compile_graph
    from graphloop.graph.sessions import SharedSession

    config: Any = {"configurable": {"thread_id": "nobody"}}
    shared = SharedSession(db, compile_graph())

    async def at_once() -> None:
        async with shared() as (first, ledger):
            with pytest.raises(RuntimeError, match="boom"):
                async with shared() as (second, same_ledger):
                    assert second is first and same_ledger is ledger
                    raise RuntimeError("boom")  # one run failing leaves the others their session
            assert (await first.aget_state(config)).values == {}
        with pytest.raises((sqlite3.ProgrammingError, PoolClosed)):  # closed by the last run out
            await first.aget_state(config)
        async with shared() as (fresh, _):
            assert fresh is not first and (await fresh.aget_state(config)).values == {}

    async def cancelled() -> None:
        entered = asyncio.Event()
        held: list[Any] = []

        async def hold() -> None:
            async with shared() as (graph, _):
                held.append(graph)
                assert (await graph.aget_state(config)).values == {}
                entered.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(hold())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises((sqlite3.ProgrammingError, PoolClosed)):  # a cancelled run closes its session too
            await held[0].aget_state(config)

    asyncio.run(at_once())
    asyncio.run(cancelled())
