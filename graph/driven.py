"""One caller per thread: the compiled loop holds its thread for the length of a run.

Every way into a run passes through `stream` or `astream` (`invoke` and `ainvoke` call them,
and so does a LangGraph server), so that is where the thread is taken: before the first read
of its checkpoint, given back after the last write (`graphloop.checkpointers.drivers`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langgraph.types import StateUpdate

from graphloop.checkpointers import Drivers, Ledger
from graphloop.graph.ownership import OwnedGraph, recast
from graphloop.nodes import LEDGER_KEY, LoopContext

__all__ = ["WAIT_FOR_THREAD", "DrivenGraph", "driven"]

WAIT_FOR_THREAD = "wait_for_thread"
"""`configurable` key: seconds a run waits for its thread while another run has it (0, the
default: it is refused at once with `ThreadBusyError`)."""


def _driver(graph: OwnedGraph, config: RunnableConfig | None, context: object) -> tuple[Drivers, str, float] | None:
    """The drivers, thread and wait of a run that must hold its thread: a run of a thread
    (not a subgraph's) with a ledger, bound by `compile_graph` or brought by the context."""
    configurable = merge_configs(graph.config, config).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    ledger = configurable.get(LEDGER_KEY) or (context.ledger if isinstance(context, LoopContext) else None)
    if thread_id is None or configurable.get("checkpoint_ns") or not isinstance(ledger, Ledger):
        return None
    return ledger.drivers, str(thread_id), configurable.get(WAIT_FOR_THREAD) or 0.0


def _hold(graph: OwnedGraph, config: RunnableConfig | None, context: object) -> AbstractContextManager[None]:
    """The thread held for the block, when the call must hold one (see `_driver`)."""
    found = _driver(graph, config, context)
    return nullcontext() if found is None else found[0].drive(found[1], found[2])


def _ahold(graph: OwnedGraph, config: RunnableConfig | None, context: object) -> AbstractAsyncContextManager[None]:
    """`_hold`, waiting without blocking the event loop."""
    found = _driver(graph, config, context)
    return nullcontext() if found is None else found[0].adrive(found[1], found[2])


class DrivenGraph(OwnedGraph):
    """The compiled loop, run by one caller per thread at a time. A second run of a thread
    that is running raises `ThreadBusyError` before it reads anything, or waits up to
    `config["configurable"]["wait_for_thread"]` seconds for it. A state update writes a
    checkpoint too, and holds the thread as a run does."""

    # langgraph's overloads state these loosely; the parameters are passed on unchanged
    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:  # pyright: ignore[reportIncompatibleMethodOverride]
        with _hold(self, config, kwargs.get("context")):
            yield from super().stream(input, config, **kwargs)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:  # pyright: ignore[reportIncompatibleMethodOverride]
        async with _ahold(self, config, kwargs.get("context")):
            async for chunk in super().astream(input, config, **kwargs):
                yield chunk

    def bulk_update_state(self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]) -> RunnableConfig:
        with _hold(self, config, None):
            return super().bulk_update_state(config, supersteps)

    async def abulk_update_state(self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]) -> RunnableConfig:
        async with _ahold(self, config, None):
            return await super().abulk_update_state(config, supersteps)


def driven(compiled: OwnedGraph) -> OwnedGraph:
    """`compiled` as a `DrivenGraph` (see `graphloop.graph.ownership.recast`)."""
    return compiled if isinstance(compiled, DrivenGraph) else recast(compiled, DrivenGraph)
