"""The graph `langgraph dev` (and LangGraph Platform) serves, through `langgraph.json`.

A served graph gets its runs from HTTP clients, which must not send API keys or tool code.
So the models and tools come from the server's own settings (`graphloop.toml` in the working
directory, or the file `GRAPHLOOP_CONFIG` names, or `OPENAI_BASE_URL`/`OPENAI_API_KEY` and
`OPENAI_MODEL`; see `graphloop.graph.settings`), read once when the first run starts. The
server's checkpointer holds the threads; clients resume with
`Command(resume={"decisions": [...]})` as usual.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from graphloop.graph.builder import LoopGraph, compile_graph
from graphloop.graph.settings import load_settings
from graphloop.nodes import LoopContext

__all__ = ["ServedGraph", "graph", "server_context"]


@functools.cache
def server_context() -> LoopContext:
    """The models and tools of this server, from its settings (read once)."""
    config = os.environ.get("GRAPHLOOP_CONFIG")
    settings = load_settings(Path(config) if config else None)
    return LoopContext.create(models=settings.models, tools=settings.tools,
                              confirm_required=settings.confirm_required)


class ServedGraph(LoopGraph):
    """The compiled loop, with the server's context for runs that bring none."""

    def stream(self, input: Any, config: Any = None, *, context: Any = None, **kwargs: Any) -> Iterator[Any]:  # pyright: ignore[reportIncompatibleMethodOverride]  # same parameters, loosely typed
        return super().stream(input, config, context=context or server_context(), **kwargs)  # pyright: ignore[reportUnknownMemberType]

    def astream(self, input: Any, config: Any = None, *, context: Any = None, **kwargs: Any) -> AsyncIterator[Any]:  # pyright: ignore[reportIncompatibleMethodOverride]  # same parameters, loosely typed
        return super().astream(input, config, context=context or server_context(), **kwargs)  # pyright: ignore[reportUnknownMemberType]


def _served(compiled: LoopGraph) -> ServedGraph:
    served = copy.copy(compiled)
    served.__class__ = ServedGraph  # the same object layout; only the two entry points differ
    return served  # pyright: ignore[reportReturnType]  # the class was just set


graph = _served(compile_graph())
"""The loop without a checkpointer: the server brings its own."""
