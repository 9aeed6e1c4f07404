"""graphloop's own threads: one pool for its blocking database calls, the pool type, and
`Held`, which keeps a database open for work that outlives the run that started it.

The ledger (sqlite3, psycopg) and the opening of a database block, so async code runs them
on a thread. Not on asyncio's default executor: LangChain runs sync tools there
(`run_in_executor(None, ...)`), and six tools that hang (that pool's size on a 2-core
machine) stalled the database work of every run in the process. graphloop's database calls
have `DB_THREADS` threads of their own, and its sync tools another pool (the `invoke`
node module), so neither waits behind the other.

Example:
    >>> import asyncio
    >>> asyncio.run(in_db_thread(sum, [1, 2, 3]))
    6
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["DB_THREADS", "Held", "ThreadPool", "in_db_thread"]

P = ParamSpec("P")
T = TypeVar("T")

DB_THREADS = 8
"""Threads for graphloop's database calls in one process (they are short: a claim, a row)."""

_pools: weakref.WeakSet[ThreadPool] = weakref.WeakSet()


class ThreadPool:
    """A thread pool made on first use, and made again in a forked child (whose copy of the
    parent's pool has no threads: work given to it would wait forever)."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        _pools.add(self)

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.size, thread_name_prefix=self.name)
            return self._executor

    def shutdown(self) -> None:
        """Wait for the work given to the threads, and let them end; the next use makes new ones."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._executor = None


def _after_fork() -> None:
    for pool in list(_pools):
        pool._forget()  # pyright: ignore[reportPrivateUsage]  # this module's own class


os.register_at_fork(after_in_child=_after_fork)

_db = ThreadPool("graphloop-db", DB_THREADS)


async def in_db_thread(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`asyncio.to_thread` for graphloop's database calls: on their own threads, never
    queued behind user tools; the caller's context variables go along."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_db.executor(), call)


_holding = threading.Lock()


class Held:
    """Something closed when its `with` block ends, unless work that outlives the block holds
    it: then by the last `release` (a sync tool call past its timeout records its outcome
    in the ledger when it ends, long after its run closed the database)."""

    _holds: int = 0
    _close: Callable[[], None] | None = None
    _closed: bool = False

    def hold(self) -> bool:
        """Keep it open until `release`; False when it is closed already."""
        with _holding:
            if not self._closed:
                self._holds += 1
            return not self._closed

    def release(self) -> None:
        """End a `hold`; the last one closes it if its `with` block has ended."""
        with _holding:
            self._holds -= 1
            close, self._close = (self._close, None) if self._holds == 0 else (None, self._close)
            self._closed = self._closed or close is not None
        if close is not None:
            close()

    def close_when_free(self, close: Callable[[], None]) -> None:
        """For the end of the `with` block: `close` now, or at the last `release`."""
        with _holding:
            if self._holds:
                self._close = close
                return
            self._closed = True
        close()
