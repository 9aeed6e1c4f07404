"""`build_graph` wires the nodes; `compile_graph` adds a checkpointer.

Example:
    >>> graph = compile_graph()
    >>> sorted(n for n in graph.get_graph().nodes if not n.startswith("__"))
    ['ask_confirmation', 'call_model', 'compact', 'execute_tools', 'finalize', 'interrupt_for_confirm', 'run_tool']
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime, get_runtime

from graphloop.nodes import (
    LoopContext,
    LoopState,
    ask_confirmation,
    call_model,
    compact,
    execute_tools,
    finalize,
    interrupt_for_confirm,
    route_after_execute,
    route_after_model,
    run_sync,
    run_tool,
)
from graphloop.nodes.names import (
    ASK_CONFIRMATION,
    CALL_MODEL,
    COMPACT,
    EXECUTE_TOOLS,
    FINALIZE,
    INTERRUPT_FOR_CONFIRM,
    RUN_TOOL,
)

__all__ = ["LoopGraph", "build_graph", "compile_graph"]

In = TypeVar("In")
Out = TypeVar("Out")
LoopGraph = CompiledStateGraph[LoopState, LoopContext, LoopState, LoopState]


def _sync_and_async(node: Callable[[In, Runtime[LoopContext]], Coroutine[Any, Any, Out]]) -> RunnableLambda[In, Out]:
    """Serve an async node to both `invoke` and `ainvoke` without a second copy of it."""

    def run(state: In) -> Out:
        return run_sync(node(state, get_runtime(LoopContext)))

    async def arun(state: In) -> Out:
        return await node(state, get_runtime(LoopContext))

    return RunnableLambda(run, afunc=arun, name=node.__name__)


def build_graph() -> StateGraph[LoopState, LoopContext, LoopState, LoopState]:
    """The loop as an uncompiled `StateGraph`, for you to extend or compile.

    Run it with a `LoopContext` as `context=`: the models, their keys and the tools travel
    there, never in the checkpoint.
    """
    builder = StateGraph(LoopState, context_schema=LoopContext)
    # add_node's overloads are partly untyped in langgraph; the nodes themselves are typed.
    add_node: Callable[[str, Any], object] = builder.add_node  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    add_node(COMPACT, compact)
    add_node(CALL_MODEL, _sync_and_async(call_model))
    add_node(EXECUTE_TOOLS, execute_tools)
    add_node(RUN_TOOL, _sync_and_async(run_tool))
    add_node(ASK_CONFIRMATION, _sync_and_async(ask_confirmation))
    add_node(INTERRUPT_FOR_CONFIRM, interrupt_for_confirm)
    add_node(FINALIZE, _sync_and_async(finalize))

    builder.add_edge(START, COMPACT)
    builder.add_edge(COMPACT, CALL_MODEL)
    builder.add_conditional_edges(CALL_MODEL, route_after_model, [EXECUTE_TOOLS, FINALIZE])
    builder.add_conditional_edges(
        EXECUTE_TOOLS, route_after_execute,
        [RUN_TOOL, ASK_CONFIRMATION, INTERRUPT_FOR_CONFIRM, COMPACT, FINALIZE],
    )
    builder.add_edge(RUN_TOOL, EXECUTE_TOOLS)
    builder.add_edge(ASK_CONFIRMATION, INTERRUPT_FOR_CONFIRM)
    builder.add_edge(INTERRUPT_FOR_CONFIRM, EXECUTE_TOOLS)
    builder.set_finish_point(FINALIZE)
    return builder


def compile_graph(checkpointer: BaseCheckpointSaver[str] | None = None) -> LoopGraph:
    """`build_graph()` compiled; pass a checkpointer to pause and resume across processes."""
    return build_graph().compile(checkpointer=checkpointer)  # pyright: ignore[reportUnknownMemberType]  # langgraph's compile() is partly untyped
