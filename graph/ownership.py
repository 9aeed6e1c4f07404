"""Which threads are graphloop's: a database may also hold another LangGraph application's.

Two applications compiled with savers on one file (or one PostgreSQL database) share one
table of checkpoints, keyed by thread id alone. So graphloop stamps every checkpoint it writes
(`{"graphloop": <version>}` in the checkpoint's metadata, from the compiled graph's config)
and recognises the threads of 0.1 and 0.2, written before the stamp, by the channels only its
graph has: the run's `policy` with `rounds` and `pending`, or the `compacted` log (whose delta counters are in every
checkpoint's metadata, the input's too). A thread with none of these is another
application's: graphloop neither reads nor writes it (`ForeignThreadError`, one read of the
thread's latest checkpoint before anything runs), and retention and the inbox pass it by.

Example:
    >>> is_ours({"source": "loop", "step": 1}, ["messages", "branch:to:chatbot"])
    False
    >>> is_ours({"graphloop": "0.3.0"}, [])
    True
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, merge_configs
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot, StateUpdate

from graphloop.checkpointers import (
    COMPRESSED,
    ConfigurationError,
    ForeignThreadError,
    InvalidDecisionError,
    Ledger,
    in_db_thread,
    is_short_version,
    writes_short_versions,
)
from graphloop.nodes import LoopContext, LoopState

__all__ = ["MARK", "VERSION", "OwnedGraph", "check_owned", "check_writable", "is_ours", "own_threads", "owned_graph", "recast"]

VERSION = version("graphloop")
"""This graphloop's version: stamped on the threads it writes and on their policy."""

MARK = "graphloop"
"""The checkpoint metadata key graphloop stamps; its value is the release that wrote it."""

_OWN_CHANNELS = frozenset({"policy", "rounds", "pending"})
"""Channels only graphloop's graph has, all together (another application may well have a
`policy` of its own)."""
_OWN_DELTAS = "compacted"


def is_ours(metadata: Mapping[str, Any], channels: Collection[str]) -> bool:
    """Whether a checkpoint with this metadata and these channels was written by graphloop."""
    counters: Mapping[str, Any] = metadata.get("counters_since_delta_snapshot") or {}
    return MARK in metadata or _OWN_CHANNELS.issubset(channels) or _OWN_DELTAS in counters


def check_owned(saved: CheckpointTuple | None, thread_id: object) -> None:
    """Refuse a thread graphloop did not create; a thread with no checkpoint is new, so ours."""
    if saved is not None and not is_ours(saved.metadata, saved.checkpoint["channel_versions"]):
        raise ForeignThreadError(
            f"thread {str(thread_id)!r} was not created by graphloop: another application keeps a "
            "thread of that id in this database, and graphloop neither reads nor changes it; "
            "pick another thread_id, or give graphloop a database of its own", thread_id=str(thread_id))


def check_writable(saved: CheckpointTuple | None, thread_id: object, saver: BaseCheckpointSaver[str]) -> None:
    """Refuse to write a thread with graphloop's short channel versions through a saver that
    writes LangGraph's stock ones: they would sort before the thread's, and the graph would
    take its own steps for stale (`graphloop.checkpointers.savers`)."""
    if saved is None or writes_short_versions(saver):
        return
    if any(is_short_version(v) for v in saved.checkpoint["channel_versions"].values()):
        raise ConfigurationError(
            f"thread {str(thread_id)!r} has graphloop's short channel versions, which this saver "
            f"({type(saver).__name__}) cannot follow; open the database with graphloop's open_saver or "
            "open_async_saver")


def _check_saved(saved: CheckpointTuple | None, thread_id: object, saver: BaseCheckpointSaver[str],
                 writing: bool) -> None:
    """What `_check` and `_acheck` ask of the checkpoint they read: ours, and writable here."""
    check_owned(saved, thread_id)
    if writing:
        check_writable(saved, thread_id, saver)


def _check_command(input: object) -> None:
    """Refuse a `Command` that carries nothing (`Command(resume=None)`): LangGraph fails on it
    deep inside with an error that says nothing of what to send."""
    if isinstance(input, Command):
        command = cast(Command[Any], input)
        goto: object = command.goto  # pyright: ignore[reportUnknownMemberType]  # langgraph types goto loosely
        if command.resume is None and command.update is None and not goto:
            raise InvalidDecisionError(
                "Command() carries no resume value, update or goto: answer a pause with "
                "Command(resume={'decisions': [{'type': 'approve'}, ...]})")


@contextmanager
def _readable(thread_id: object, saver: BaseCheckpointSaver[str]) -> Generator[None]:
    """Say what to do when `saver` (a stock one) meets the rows graphloop's savers compress."""
    try:
        yield
    except NotImplementedError as exc:
        if COMPRESSED not in str(exc):
            raise
        raise ConfigurationError(
            f"thread {str(thread_id)!r} was saved by graphloop's savers in their compressed form "
            f"({COMPRESSED}), which this saver ({type(saver).__name__}) cannot read; open the database "
            "with graphloop's open_saver or open_async_saver") from None


async def own_threads(saver: BaseCheckpointSaver[str], ledger: Ledger) -> list[tuple[str, CheckpointTuple]]:
    """graphloop's threads in the database, each with its latest checkpoint (one read each)."""
    found: list[tuple[str, CheckpointTuple]] = []
    for thread_id in await in_db_thread(ledger.thread_ids):  # blocking I/O off the event loop
        latest = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
        if latest is not None and is_ours(latest.metadata, latest.checkpoint["channel_versions"]):
            found.append((thread_id, latest))
    return found


class OwnedGraph(CompiledStateGraph[LoopState, LoopContext, LoopState, LoopState]):
    """The compiled loop, refusing a thread graphloop did not create on every way in: runs
    (`invoke`, `stream` and their async twins), state reads and state updates."""

    def _saver(self, config: RunnableConfig | None) -> tuple[RunnableConfig, object, BaseCheckpointSaver[str] | None]:
        """The call's config, its thread id, and the saver it will use (a LangGraph server lends
        its own through the config); no saver when there is no thread to check."""
        merged = ensure_config(merge_configs(self.config, config))
        thread_id = merged.get("configurable", {}).get("thread_id")
        if thread_id is None:
            return merged, None, None  # langgraph says what is missing, if anything
        return merged, thread_id, self._saver_for(merged)

    def _saver_for(self, config: RunnableConfig) -> BaseCheckpointSaver[str] | None:
        """langgraph's own choice (`_resolve_checkpointer`, private), or, should a release drop
        it, the same rule from public parts: the saver a server or parent lends through the
        config, else this graph's."""
        resolve = getattr(self, "_resolve_checkpointer", None)
        if callable(resolve):
            return cast(BaseCheckpointSaver[str] | None, resolve(config))
        lent: object = config.get("configurable", {}).get("__pregel_checkpointer")
        own = cast(object, self.checkpointer)  # pyright: ignore[reportUnknownMemberType]  # langgraph leaves its parameter open
        saver: object = lent if lent is not None else own
        return cast(BaseCheckpointSaver[str], saver) if isinstance(saver, BaseCheckpointSaver) else None

    def _check(self, config: RunnableConfig | None, *, writing: bool = False) -> None:
        merged, thread_id, saver = self._saver(config)
        if saver is not None:
            with _readable(thread_id, saver):
                saved = saver.get_tuple(merged)
            _check_saved(saved, thread_id, saver, writing)

    async def _acheck(self, config: RunnableConfig | None, *, writing: bool = False) -> None:
        merged, thread_id, saver = self._saver(config)
        if saver is not None:
            with _readable(thread_id, saver):
                saved = await saver.aget_tuple(merged)
            _check_saved(saved, thread_id, saver, writing)

    # langgraph's overloads state these loosely; the parameters are passed on unchanged
    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:  # pyright: ignore[reportIncompatibleMethodOverride]
        _check_command(input)
        self._check(config, writing=True)
        return super().stream(input, config, **kwargs)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:  # pyright: ignore[reportIncompatibleMethodOverride]
        _check_command(input)
        await self._acheck(config, writing=True)
        async for chunk in super().astream(input, config, **kwargs):  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            yield chunk

    def get_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> StateSnapshot:
        self._check(config)
        return super().get_state(config, subgraphs=subgraphs)

    async def aget_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> StateSnapshot:
        await self._acheck(config)
        return await super().aget_state(config, subgraphs=subgraphs)

    def get_state_history(self, config: RunnableConfig, **kwargs: Any) -> Iterator[StateSnapshot]:  # pyright: ignore[reportIncompatibleMethodOverride]
        self._check(config)
        return super().get_state_history(config, **kwargs)

    async def aget_state_history(self, config: RunnableConfig, **kwargs: Any) -> AsyncIterator[StateSnapshot]:  # pyright: ignore[reportIncompatibleMethodOverride]
        await self._acheck(config)
        async for snapshot in super().aget_state_history(config, **kwargs):
            yield snapshot

    def bulk_update_state(self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]) -> RunnableConfig:
        self._check(config, writing=True)
        return super().bulk_update_state(config, supersteps)

    async def abulk_update_state(self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]) -> RunnableConfig:
        await self._acheck(config, writing=True)
        return await super().abulk_update_state(config, supersteps)


G = TypeVar("G", bound=CompiledStateGraph[LoopState, LoopContext, LoopState, LoopState])


def recast(compiled: CompiledStateGraph[LoopState, LoopContext, LoopState, LoopState], cls: type[G]) -> G:
    """`compiled` as an instance of its subclass `cls`, made as langgraph's public
    `Pregel.copy` makes copies: the class called with the instance's attributes. Should a
    langgraph release change that, `ConfigurationError` says so at once (at import)."""
    try:
        return cls(**{k: v for k, v in vars(compiled).items() if k != "__orig_class__"})
    except TypeError as exc:
        raise ConfigurationError(f"graphloop cannot build its {cls.__name__} with this langgraph "
                                 f"({exc}); install a langgraph graphloop supports") from None


def owned_graph(compiled: CompiledStateGraph[LoopState, LoopContext, LoopState, LoopState]) -> OwnedGraph:
    """`compiled` as an `OwnedGraph` whose checkpoints carry graphloop's stamp."""
    return recast(compiled, OwnedGraph).with_config(metadata={MARK: VERSION})
