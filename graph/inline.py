"""Quick synchronous steps run on the event loop, not on a worker thread.

Given a plain function, LangGraph's async path runs it with `run_in_executor`: a hop to a worker
thread and back for each router and each synchronous node, four to five a round, which cost
more than the functions themselves (they only read the state). `on_the_loop` gives LangGraph
the same function with an async twin that calls it in place. Only functions that neither block
nor wait belong here: graphloop's routers. A developer's branch conditions keep LangGraph's
thread (they may block: a lookup, a moderation call), so with branches registered the router
after `call_model` does too. graphloop's sync nodes keep their thread: they may write the
ledger (`compact` does when it settles a pause that new input left), and measured in place,
`compact` saved nothing a round could show.

This leans on `RunnableCallable`, a private part of LangGraph (the class its own
`coerce_to_runnable` builds from a function); pyproject bounds the version, and when the class
is missing or takes other arguments the function is given to LangGraph as it is, which is
LangGraph's public path and only slower.

Example:
    >>> def route(state: dict[str, int]) -> str:
    ...     return "done"
    >>> import asyncio
    >>> asyncio.run(on_the_loop(route, name="route", trace=False).ainvoke({}))
    'done'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["on_the_loop"]


def _runnable_callable() -> type | None:
    """LangGraph's `RunnableCallable` when it takes what `on_the_loop` passes, else None."""
    try:
        from langgraph._internal._runnable import RunnableCallable
    except ImportError:
        return None
    wanted = {"func", "afunc", "name", "trace"}
    return RunnableCallable if wanted <= set(inspect.signature(RunnableCallable).parameters) else None


_RUNNABLE_CALLABLE = _runnable_callable()


def on_the_loop(func: Callable[..., Any], *, name: str | None, trace: bool) -> Any:
    """`func` for a LangGraph node or router, run in place by the async path too.

    `name` and `trace` are what LangGraph itself would give: a node's name and `trace=False`
    for a node, `None` (the function's own name) and `trace=True` for a router.
    """
    if _RUNNABLE_CALLABLE is None:
        return func

    async def in_place(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return _RUNNABLE_CALLABLE(func, in_place, name=name or getattr(func, "__name__", None), trace=trace)
