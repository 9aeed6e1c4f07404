"""Run the async core from synchronous code, on one long-lived event loop.

Async HTTP clients are bound to the loop that made them; a fresh `asyncio.run` per call would
strand them (see langchain-ai/langchain#35783). So synchronous callers share one background
loop, and the caller's context variables (LangGraph's config, callbacks) travel with each call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="graphloop-sync", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code and return its result.

    Example:
        >>> async def answer() -> int:
        ...     return 42
        >>> run_sync(answer())
        42
    """
    loop = _background_loop()
    context = contextvars.copy_context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def finish(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            done.cancel()
        elif (exc := task.exception()) is not None:
            done.set_exception(exc)
        else:
            done.set_result(task.result())

    def start() -> None:
        loop.create_task(coro, context=context).add_done_callback(finish)

    loop.call_soon_threadsafe(start)
    return done.result()
