"""Run the async core from synchronous code, on one long-lived event loop.

Async HTTP clients are bound to the loop that made them; a fresh `asyncio.run` per call would
strand them (see langchain-ai/langchain#35783). So synchronous callers share one background
loop, and the caller's context variables (LangGraph's config, callbacks) travel with each call.

The sync wrappers never wait forever:
- A `KeyboardInterrupt` or `SystemExit` raised in a task escapes the loop running it (asyncio
  lets both through) and would stop it for every caller. The background loop starts again at
  once; the exception reaches the caller whose run raised it, and the other runs go on.
- Code that a sync wrapper is running (an async tool on graphloop's loop, or a tool thread,
  calling another Orchestrator's `run_sync`) must not wait for work queued behind itself:
  its call runs on a fresh loop in a new thread, and the caller blocks until it ends (an
  async tool blocks its loop meanwhile, as any blocking call in async code does). A bare
  `threading.Thread` that such code starts does not inherit the context variable that marks
  it, and deadlocks if its starter waits for it on graphloop's loop.
- A caller interrupted while it waits (Ctrl-C) cancels the run it started.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("graphloop_inside_run_sync", default=False)
"""Set in what a sync wrapper runs; context variables follow into tasks and tool threads."""


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """Run `loop` for good, through a task's `KeyboardInterrupt` or `SystemExit`."""
    while True:
        try:
            loop.run_forever()
            return
        except BaseException as exc:  # noqa: BLE001  # its task's caller gets it from the task
            logger.debug("graphloop's loop goes on after a task raised %r", exc)


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_serve, args=(_loop,), name="graphloop-sync", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code and return its result.

    Example:
        >>> async def answer() -> int:
        ...     return 42
        >>> run_sync(answer())
        42
    """
    if _inside.get():
        return _on_a_fresh_loop(coro)
    loop = _background_loop()
    context = _marked_context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    started: list[asyncio.Task[T]] = []

    def finish(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            done.cancel()
        elif (exc := task.exception()) is not None:
            done.set_exception(exc)
        else:
            done.set_result(task.result())

    def start() -> None:
        started.append(loop.create_task(coro, context=context))
        started[0].add_done_callback(finish)

    loop.call_soon_threadsafe(start)
    try:
        return done.result()
    except BaseException:
        loop.call_soon_threadsafe(lambda: started and started[0].cancel())  # interrupted: stop the run
        raise


def _marked_context() -> contextvars.Context:
    """The caller's context variables, marked as inside a sync wrapper."""
    context = contextvars.copy_context()
    context.run(_inside.set, True)
    return context


def _on_a_fresh_loop(coro: Coroutine[Any, Any, T]) -> T:
    """`coro` run on a new loop in a new thread, for a caller on one of graphloop's loops."""
    context = _marked_context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def serve() -> None:
        try:
            with asyncio.Runner() as runner:
                result = runner.run(coro, context=context)
            done.set_result(result)
        except BaseException as exc:  # noqa: BLE001  # handed to the caller, whatever it is
            done.set_exception(exc)

    threading.Thread(target=serve, name="graphloop-nested", daemon=True).start()
    return done.result()
