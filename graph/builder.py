"""`build_graph` wires the nodes; `compile_graph` adds a checkpointer.

Example:
    >>> graph = compile_graph()
    >>> sorted(n for n in graph.get_graph().nodes if not n.startswith("__"))
    ['ask_confirmation', 'call_model', 'compact', 'execute_tools', 'finalize', 'interrupt_for_confirm', 'run_tool']
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Coroutine, Sequence
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime, get_runtime

from graphloop.checkpointers import LedgerWarning, ledger_for
from graphloop.graph.driven import driven
from graphloop.graph.inline import on_the_loop
from graphloop.graph.ownership import OwnedGraph, owned_graph
from graphloop.nodes import (
    ASK_CONFIRMATION,
    CALL_MODEL,
    COMPACT,
    EXECUTE_TOOLS,
    FINALIZE,
    INTERRUPT_FOR_CONFIRM,
    LEDGER_KEY,
    RUN_TOOL,
    Branch,
    BranchRouter,
    LoopContext,
    LoopState,
    ask_confirmation,
    call_model,
    check_branches,
    compact,
    execute_tools,
    finalize,
    interrupt_for_confirm,
    route_after_execute,
    route_after_model,
    route_after_tools,
    run_sync,
    run_tool,
    span,
)

__all__ = ["LoopGraph", "build_graph", "compile_graph", "edges_of"]

In = TypeVar("In")
Out = TypeVar("Out")
LoopGraph = OwnedGraph
"""The compiled loop: it refuses threads graphloop did not create (`graphloop.graph.ownership`)."""


def _sync_and_async(node: Callable[[In, Runtime[LoopContext]], Coroutine[Any, Any, Out]]) -> RunnableLambda[In, Out]:
    """Serve an async node to both `invoke` and `ainvoke` without a second copy of it (in its
    span, see `graphloop.nodes.tracing`)."""
    traced = _traced(node)

    def run(state: In) -> Out:
        return run_sync(traced(state, get_runtime(LoopContext)))

    async def arun(state: In) -> Out:
        return await traced(state, get_runtime(LoopContext))

    return RunnableLambda(run, afunc=arun, name=node.__name__)


F = TypeVar("F", bound=Callable[..., Any])


def _traced(node: F) -> F:
    """`node`, each call in a span named `graphloop.<node>` (`graphloop.nodes.tracing`); its
    signature and type hints are the node's, which LangGraph reads."""
    name = getattr(node, "__name__", type(node).__name__)
    attributes = {"graphloop.node": name}
    if inspect.iscoroutinefunction(node):
        @functools.wraps(node)
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            with span(f"graphloop.{name}", attributes):
                return await node(*args, **kwargs)
        return cast(F, traced_async)

    @functools.wraps(node)
    def traced(*args: Any, **kwargs: Any) -> Any:
        with span(f"graphloop.{name}", attributes):
            return node(*args, **kwargs)
    return cast(F, traced)


def build_graph(branches: Sequence[Branch] = ()) -> StateGraph[LoopState, LoopContext, LoopState, LoopState]:
    """The loop as an uncompiled `StateGraph`, for you to extend or compile.

    Run it with a `LoopContext` as `context=`: the models, their keys and the tools travel
    there, never in the checkpoint.

    Args:
        branches: Your own nodes, entered after the model replied when their condition holds
            (see `graphloop.nodes.branches`). A duplicate name or an unknown target raises
            `ConfigurationError` here.
    """
    check_branches(branches)
    builder = StateGraph(LoopState, context_schema=LoopContext)
    # add_node's overloads are partly untyped in langgraph; the nodes themselves are typed.
    add_node: Callable[[str, Any], object] = builder.add_node  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    add_node(COMPACT, _traced(compact))
    add_node(CALL_MODEL, _sync_and_async(call_model))
    add_node(EXECUTE_TOOLS, _traced(execute_tools))
    add_node(RUN_TOOL, _sync_and_async(run_tool))
    add_node(ASK_CONFIRMATION, _sync_and_async(ask_confirmation))
    add_node(INTERRUPT_FOR_CONFIRM, _traced(interrupt_for_confirm))
    add_node(FINALIZE, _sync_and_async(finalize))

    builder.add_edge(START, COMPACT)
    builder.add_edge(COMPACT, CALL_MODEL)
    for branch in branches:
        add_node(branch.name, cast(Any, _traced(branch.node)))  # langgraph's node protocols want parameter names a Callable type cannot state
        builder.add_edge(branch.name, END if branch.then == END else branch.then)
    # graphloop's routers read the state only: run in place, not on a worker thread
    # (`on_the_loop`); a developer's branch conditions may block, so they keep LangGraph's thread
    router = BranchRouter(tuple(branches))
    builder.add_conditional_edges(CALL_MODEL, router if branches else on_the_loop(router, name="BranchRouter", trace=True),
                                  [*edges_of(route_after_model), *(b.name for b in branches)])
    builder.add_conditional_edges(EXECUTE_TOOLS, on_the_loop(route_after_execute, name=None, trace=True),
                                  edges_of(route_after_execute))
    # once the turn's calls are answered, straight on: a second pass of execute_tools would
    # find nothing to do and cost a checkpoint per round
    builder.add_conditional_edges(RUN_TOOL, on_the_loop(route_after_tools, name=None, trace=True),
                                  edges_of(route_after_tools))
    builder.add_edge(ASK_CONFIRMATION, INTERRUPT_FOR_CONFIRM)
    builder.add_edge(INTERRUPT_FOR_CONFIRM, EXECUTE_TOOLS)
    builder.set_finish_point(FINALIZE)
    return builder


def edges_of(router: Callable[..., object]) -> list[str]:
    """The nodes `router` may go to, read from its return annotation: the names in its
    `Literal`s, and the node named in an `Annotated[list[Send], node]`.

    Example:
        >>> edges_of(route_after_model)
        ['run_tool', 'execute_tools', 'finalize']
    """
    found: list[str] = []
    pending: list[object] = [get_type_hints(router, include_extras=True)["return"]]
    while pending:
        kind = pending.pop(0)
        origin = get_origin(kind)
        if origin is Literal:
            found += [str(name) for name in get_args(kind)]
        elif origin is Annotated:
            found += [str(name) for name in get_args(kind)[1:]]
        elif origin in (Union, UnionType):
            pending += get_args(kind)
    if not found:
        raise TypeError(f"{router.__name__} names no node in its return annotation")
    return found


def compile_graph(
    checkpointer: BaseCheckpointSaver[str] | None = None, branches: Sequence[Branch] = ()
) -> LoopGraph:
    """`build_graph(branches)` compiled; pass a checkpointer to pause and resume across processes.

    A saver from graphloop's factories (`open_saver`, `open_async_saver`, `memory_saver`)
    carries its database's ledger, which the compiled graph binds to every run: each call is
    claimed before it runs (at most once, also for a client resuming an old checkpoint) and
    audited, decisions are recorded, paused threads are listed. Any other saver gets a
    `LedgerWarning`, once per saver type: pass `LoopContext.create(ledger=...)` or
    `attach_ledger(saver, ledger)`, or open the saver with graphloop.
    """
    graph = driven(owned_graph(build_graph(branches).compile(checkpointer=checkpointer)))  # pyright: ignore[reportUnknownMemberType]  # langgraph's compile() is partly untyped
    if not isinstance(checkpointer, BaseCheckpointSaver):
        return graph
    ledger = ledger_for(checkpointer)
    if ledger is None:
        _warn_no_ledger(type(checkpointer))
        return graph
    # a configurable key starting with "__" is never written to a checkpoint
    return graph.with_config(configurable={LEDGER_KEY: ledger})


@functools.cache
def _warn_no_ledger(saver_type: type) -> None:
    warnings.warn(LedgerWarning(
        f"graphloop cannot attach a ledger to {saver_type.__name__}: unless the context brings one "
        "(LoopContext.create(ledger=...)), tool calls are not claimed (an approved call resumed "
        "twice can run twice) nor audited; open the saver with graphloop's open_saver, "
        "open_async_saver or memory_saver, or call attach_ledger(saver, ledger)"), stacklevel=3)
