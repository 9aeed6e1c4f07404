"""The graph `langgraph dev` (and LangGraph Platform) serves, through `langgraph.json`.

A served graph gets its runs from HTTP clients, which must not send API keys or tool code.
So the models and tools come from the server's own settings (`graphloop.toml` in the working
directory, or the file `GRAPHLOOP_CONFIG` names, or `OPENAI_BASE_URL`/`OPENAI_API_KEY` and
`OPENAI_MODEL`; see `graphloop.graph.settings`), read once when the first run starts. The
server's checkpointer holds the threads; graphloop's ledger lives in the database the settings
name (`db`, `graphloop.db` by default), so several server workers on that database share the
claims: an approved call runs at most once, also when a client resumes an old checkpoint.

What LangChain's review UIs send is understood: `Command(resume={"decisions": [...]})` (Agent
Chat UI) and Agent Inbox's response list; "Mark as Resolved" (`Command(goto="__end__")`) and
Agent Inbox's "ignore" as a state update to `__end__` dismiss the pause: its calls are
answered as not run and audited, and the thread is no longer paused. What else a client may
send is in `graphloop.graph.clients`: user messages and decisions, never the thread's policy.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END
from langgraph.types import Command, StateUpdate

from graphloop.checkpointers import in_db_thread, open_ledger
from graphloop.graph.builder import LoopGraph, compile_graph
from graphloop.graph.clients import client_command, client_update, client_values
from graphloop.graph.driven import DrivenGraph
from graphloop.graph.ownership import recast
from graphloop.graph.settings import load_settings
from graphloop.graph.snapshots import at_gate
from graphloop.nodes import EXECUTE_TOOLS, LoopContext, dismiss_pause

__all__ = ["ServedGraph", "graph", "server_context"]

_DISMISS = Command(resume=[{"type": "ignore", "args": None}])
"""Agent Inbox's "ignore": the gate's own way to dismiss a pause."""


_process_lifetime = contextlib.ExitStack()
"""Holds the server's ledger open until the process exits."""


@functools.cache
def server_context() -> LoopContext:
    """The models, tools and ledger of this server, from its settings (read once; the ledger
    stays open for the life of the process)."""
    config = os.environ.get("GRAPHLOOP_CONFIG")
    settings = load_settings(Path(config) if config else None)
    ledger = _process_lifetime.enter_context(open_ledger(settings.db))
    return LoopContext.create(models=settings.models, tools=settings.tools,
                              confirm_required=settings.confirm_required,
                              allowed_decisions=settings.allowed_decisions, ledger=ledger,
                              one_call_per_pause=settings.one_call_per_pause, limits=settings.limits)


def _context(context: object) -> LoopContext:
    # a client cannot bring models, keys or tools: a run's own context is used only when a
    # program (not the HTTP API, which passes plain values) hands one in
    return context if isinstance(context, LoopContext) else server_context()


def _is_mark_resolved(input: object) -> bool:
    """Agent Chat UI's "Mark as Resolved": `Command(goto="__end__")` and nothing else."""
    if not isinstance(input, Command):
        return False
    command = cast(Command[Any], input)
    goto: object = command.goto  # pyright: ignore[reportUnknownMemberType]  # langgraph types goto loosely
    return command.resume is None and command.update is None and goto in (END, [END], (END,))


class ServedGraph(DrivenGraph):
    """The compiled loop, with the server's context for runs that bring none, and the review
    UIs' ways of dismissing a pause mapped onto the gate's. One run per thread at a time, held
    in the ledger's database (`DrivenGraph`), whatever the server's own queue does."""

    def stream(self, input: Any, config: Any = None, *, context: Any = None, **kwargs: Any) -> Iterator[Any]:  # pyright: ignore[reportIncompatibleMethodOverride]  # same parameters, loosely typed
        if _is_mark_resolved(input) and config is not None and at_gate(self.get_state(config)):
            input = _DISMISS
        return super().stream(_from_client(input), config, context=_context(context), **kwargs)  # pyright: ignore[reportUnknownMemberType]

    async def astream(self, input: Any, config: Any = None, *, context: Any = None, **kwargs: Any) -> AsyncIterator[Any]:  # pyright: ignore[reportIncompatibleMethodOverride]  # same parameters, loosely typed
        if _is_mark_resolved(input) and config is not None and at_gate(await self.aget_state(config)):
            input = _DISMISS
        input = _from_client(input)
        served = await in_db_thread(_context, context)  # the first call reads files, opens the ledger
        async for chunk in super().astream(input, config, context=served, **kwargs):  # pyright: ignore[reportUnknownMemberType]
            yield chunk

    async def aupdate_state(self, config: RunnableConfig, values: Any, as_node: str | None = None,  # pyright: ignore[reportIncompatibleMethodOverride]  # same parameters
                            task_id: str | None = None) -> RunnableConfig:
        """Agent Inbox's "ignore" (values None, as node `__end__`) on a paused thread answers its
        calls as not run, as the gate's own dismissal does, instead of leaving them pending."""
        thread_id = config.get("configurable", {}).get("thread_id")
        if as_node == END and values is None and thread_id is not None:
            ledger = (await in_db_thread(server_context)).ledger
            # read, decide and write as one: a run approving the same pause waits or is refused
            async with ledger.drivers.adrive(str(thread_id)) if ledger else contextlib.nullcontext():
                snapshot = await self.aget_state(config)
                if at_gate(snapshot):
                    update = await in_db_thread(dismiss_pause, snapshot.values, ledger, str(thread_id))  # pyright: ignore[reportArgumentType]  # the graph's state
                    # graphloop's own update, past the check of clients' updates
                    return await super().abulk_update_state(config, [[StateUpdate(dict(update), EXECUTE_TOOLS)]])
        return await self.abulk_update_state(config, [[StateUpdate(values, as_node, task_id)]])

    async def abulk_update_state(self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]) -> RunnableConfig:
        """A client's state updates are refused (`graphloop.graph.clients.client_update`)."""
        return await super().abulk_update_state(config, _client_updates(supersteps))

    def bulk_update_state(self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]) -> RunnableConfig:
        """As `abulk_update_state`."""
        return super().bulk_update_state(config, _client_updates(supersteps))


def _from_client(input: object) -> Any:
    if isinstance(input, Command):
        return client_command(cast(Command[Any], input))
    return client_values(input)


def _client_updates(supersteps: Sequence[Sequence[StateUpdate]]) -> list[list[StateUpdate]]:
    for update in (u for step in supersteps for u in step):
        client_update(update.values, update.as_node)
    return []


def _served(compiled: LoopGraph) -> ServedGraph:
    """`compiled` as a `ServedGraph` (see `graphloop.graph.ownership.recast`)."""
    return recast(compiled, ServedGraph)


graph = _served(compile_graph())
"""The loop without a checkpointer: the server brings its own."""
