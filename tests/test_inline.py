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


def test_a_branch_condition_runs_on_the_event_loop_in_an_async_run(
    server: ScriptedServer, context: LoopContext
) -> None:
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
    assert threads == [loop_thread, loop_thread]  # after each of the two replies
