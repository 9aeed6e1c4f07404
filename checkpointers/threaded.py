"""The async methods of a synchronous saver, each run whole on the saver's own thread.

LangGraph's `AsyncSqliteSaver` goes through aiosqlite, which hops to its thread and back for
every statement, fetch and commit: three to five hops for one checkpoint, about a quarter of a
plain tool round's time (measured in `bench/loop_bench.py`). `OnItsThread` gives a sync saver
(LangGraph's `SqliteSaver`) the async methods instead, each running its sync twin on one thread
in one hop. One thread keeps the calls in the order they were made, as aiosqlite did, and the
event loop never waits on the database: a write that waits for another process's lock waits on
that thread.

Listing (`alist`) reads the whole list on the thread before yielding: the sync `list` holds
the saver's lock while it is read, so a list read a batch at a time could not let a write in
between.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

from graphloop.checkpointers.blocking import ThreadPool

__all__ = ["OnItsThread"]

P = ParamSpec("P")
T = TypeVar("T")


class OnItsThread(BaseCheckpointSaver[str]):
    """A mixin for a sync saver: its async methods run the sync ones on the saver's thread.

    Put it before the saver class (`class S(OnItsThread, SqliteSaver)`), and call `close()`
    when the saver's connection closes.
    """

    _pool: ThreadPool | None = None
    _closed = False

    async def _hop(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:  # no new thread for a closed connection: its own error, at once
            return func(*args, **kwargs)
        if self._pool is None:
            self._pool = ThreadPool("graphloop-saver", 1)
        call = functools.partial(func, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool.executor(), call)

    def close(self) -> None:
        """Wait for the calls given to the saver's thread, and let it end (before the
        connection closes)."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._hop(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        found = await self._hop(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in found:
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await self._hop(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await self._hop(self.put_writes, config, writes, task_id, task_path)

    async def aget_delta_channel_history(self, *, config: RunnableConfig,
                                         channels: Sequence[str]) -> Mapping[str, Any]:
        return await self._hop(self.get_delta_channel_history, config=config, channels=channels)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._hop(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._hop(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._hop(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._hop(self.prune, thread_ids, strategy=strategy)
