"""Routers and the compact node run on the event loop in async runs, not on a worker thread
(`graphloop.graph.inline`); sync runs are unchanged."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import graphloop.graph.inline as inline
from graphloop.graph import Branch, LoopContext, LoopState, compile_graph
from graphloop.graph.inline import on_the_loop
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from test_branches import _count_replies  # pyright: ignore[reportPrivateUsage]  # a test helper
from test_loop import start


def test_on_the_loop_runs_the_function_in_place_for_ainvoke_and_invoke() -> None:
    seen: list[int] = []

    def route(state: dict[str, Any]) -> str:
        seen.append(threading.get_ident())
        return "done"

    runnable = on_the_loop(route, name=None, trace=True)

    async def on_a_loop() -> tuple[str, int]:
        return await runnable.ainvoke({}), threading.get_ident()

    answer, loop_thread = asyncio.run(on_a_loop())
    assert (answer, seen) == ("done", [loop_thread])
    assert runnable.invoke({}) == "done" and seen[1] == threading.get_ident()


def test_without_langgraphs_class_the_function_is_given_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    def route(state: dict[str, Any]) -> str:
        return "done"

    monkeypatch.setattr(inline, "_RUNNABLE_CALLABLE", None)
    assert on_the_loop(route, name=None, trace=True) is route


def test_a_branch_condition_runs_on_a_worker_thread_so_one_that_blocks_stalls_no_other_run(
    server: ScriptedServer, context: LoopContext
) -> None:
    """A developer's condition may block (a lookup): it keeps LangGraph's worker thread, while
    graphloop's own routers run on the event loop."""
    threads: list[int] = []

    def condition(state: LoopState) -> bool:
        threads.append(threading.get_ident())
        return "stop" in str(state["messages"][-1].content)

    stop_early = Branch(name="stop_early", node=_count_replies, then="__end__", condition=condition)
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("please stop"))

    async def run() -> tuple[dict[str, Any], int]:
        out = await compile_graph(branches=[stop_early]).ainvoke(start("go"), context=context)
        return out, threading.get_ident()

    out, loop_thread = asyncio.run(run())
    assert out["messages"][-1].content == "2 replies so far; stopping here."
    assert len(threads) == 2 and loop_thread not in threads  # after each of the two replies


def test_without_branches_the_router_after_the_model_runs_on_the_event_loop() -> None:
    router = compile_graph().builder.branches["call_model"]
    [spec] = router.values()
    assert spec.path.afunc is not None and "run_in_executor" not in repr(spec.path.afunc)
    with_branch = compile_graph(branches=[Branch(name="b", condition=lambda s: False, node=_count_replies,
                                                 then="__end__")]).builder.branches["call_model"]
    [plain] = with_branch.values()
    assert plain.path.afunc is not None and "run_in_executor" in repr(plain.path.afunc)
