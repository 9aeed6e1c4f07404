"""The database session that the concurrent runs of one Orchestrator share.

The first run on an event loop opens the saver and the ledger; runs that start while it is
open use the same ones, and the last to finish closes them. So 200 runs at once write through
one SQLite connection, queued in this process, instead of 200 connections taking turns at the
file's write lock, where SQLite's busy handler sleeps 1 to 100 ms between tries. On PostgreSQL
they share one connection pool.

The ledger is blocking I/O: it is opened and closed off the event loop, since a blocked loop
would stall the async saver's open transaction behind it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from graphloop.checkpointers import DbLike, Ledger, ledger_for, open_async_saver
from graphloop.graph.builder import LoopGraph

__all__ = ["SharedSession"]


@dataclass
class _Open:
    graph: LoopGraph
    ledger: Ledger | None
    closing: AsyncExitStack
    users: int = 0


@dataclass
class SharedSession:
    """`graph` on `db`'s saver, with its ledger (None for a saver without one), per event loop."""

    db: DbLike
    graph: LoopGraph
    _open: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Open] = field(
        default_factory=lambda: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Open]())
    _locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = field(
        default_factory=lambda: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]())

    @asynccontextmanager
    async def __call__(self) -> AsyncGenerator[tuple[LoopGraph, Ledger | None], None]:
        loop = asyncio.get_running_loop()
        lock = self._locks.setdefault(loop, asyncio.Lock())
        async with lock:
            session = self._open.get(loop)
            if session is None:
                session = self._open[loop] = await self._start()
            session.users += 1
        try:
            yield session.graph, session.ledger
        finally:
            session.users -= 1  # at once: a cancelled run still leaves
            if session.users == 0:
                async with lock:  # a run that joined meanwhile keeps the session open
                    if session.users == 0 and self._open.get(loop) is session:
                        del self._open[loop]
                        await session.closing.aclose()

    async def _start(self) -> _Open:
        stack = AsyncExitStack()
        try:
            saver = await stack.enter_async_context(open_async_saver(self.db))
            graph = self.graph.copy({"checkpointer": saver})
            ledger = ledger_for(saver)
        except BaseException:
            await stack.aclose()
            raise
        return _Open(graph, ledger, stack)
