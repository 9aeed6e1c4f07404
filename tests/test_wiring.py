"""How the pieces are wired: edges stated once in the routers' return types, node updates typed
like the state, the token tallies owned by the context and safe under threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from graphloop.graph import LoopContext, TallyCache, TokenTally, compile_graph
from graphloop.graph.builder import edges_of
from graphloop.nodes import (
    NODE_NAMES,
    CompactionSettings,
    LoopState,
    compact,
    route_after_execute,
    route_after_model,
    route_after_tools,
)
from graphloop.nodes.state import LoopUpdate


def test_each_router_states_its_edges_in_its_return_type() -> None:
    assert edges_of(route_after_model) == ["run_tool", "execute_tools", "finalize"]
    assert edges_of(route_after_tools) == ["ask_confirmation", "interrupt_for_confirm", "compact", "finalize"]
    assert edges_of(route_after_execute) == ["run_tool", *edges_of(route_after_tools), "__end__"]
    for router in (route_after_model, route_after_tools, route_after_execute):
        assert set(edges_of(router)) <= {*NODE_NAMES, "__end__"}


def test_the_compiled_graph_has_exactly_the_edges_the_routers_state() -> None:
    drawn = compile_graph().get_graph()
    for source, router in (("call_model", route_after_model), ("execute_tools", route_after_execute),
                           ("run_tool", route_after_tools)):
        assert sorted(e.target for e in drawn.edges if e.source == source) == sorted(edges_of(router))


def test_a_router_without_a_named_edge_is_refused() -> None:
    def vague(state: LoopState) -> str:
        return "compact"

    with pytest.raises(TypeError, match="vague names no node"):
        edges_of(vague)


def test_node_updates_have_the_states_keys() -> None:
    assert LoopUpdate.__optional_keys__ == LoopState.__required_keys__ | LoopState.__optional_keys__


def test_the_token_tally_lives_in_the_context_and_is_shared_by_its_copies() -> None:
    context = LoopContext.create(models={"api_url": "http://127.0.0.1:1/v1", "model_name": "gpt-4o"})
    other = LoopContext.create(models={"api_url": "http://127.0.0.1:1/v1", "model_name": "gpt-4o"})
    state: Any = {"messages": [HumanMessage("hello", id="h1")]}
    compact(state, _runtime(context))
    assert len(context.tallies) == 1 and len(other.tallies) == 0
    copy = context.with_models({"api_url": "http://127.0.0.1:1/v1", "model_name": "gpt-4o"})
    assert copy.tallies is context.tallies


def test_the_tally_cache_keeps_the_most_recent_threads_under_concurrent_use() -> None:
    cache = TallyCache(size=8)
    settings = CompactionSettings()
    counter = LoopContext.create(models={"api_url": "http://127.0.0.1:1/v1", "model_name": "gpt-4o"}).counter
    errors: list[BaseException] = []

    def churn(worker: int) -> None:
        try:
            for i in range(300):
                key = (f"t{worker}-{i}", "m", "cl100k_base", settings)
                tally = TokenTally(counter, settings)
                tally.ingest([HumanMessage("hi", id=f"m{i}"), AIMessage("ok", id=f"a{i}")])
                cache.put(key, tally)
                assert cache.get(key) in (tally, None)  # another worker may have pushed it out
        except BaseException as exc:  # noqa: BLE001  # reported below, from the main thread
            errors.append(exc)

    workers = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == [] and len(cache) == 8


def _runtime(context: LoopContext) -> Any:
    from langgraph.runtime import Runtime

    return Runtime(context=context)
