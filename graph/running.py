"""How the Orchestrator drives a run: its options, the events it streams, what a resume sends.

`drive` runs the graph and turns LangGraph's stream into `RunEvent`s; `settled` holds the
last events back until the run's database session is closed; `command_for` checks and records
a resume's decisions before the graph moves.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing, nullcontext
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, StateSnapshot, StreamMode

from graphloop.checkpointers import InvalidDecisionError
from graphloop.checkpointers.blocking import in_db_thread
from graphloop.graph.builder import LoopGraph
from graphloop.graph.results import (
    Finished,
    OrchestratorResult,
    Paused,
    RunEvent,
    event_of,
    pending_of,
    result_of,
)
from graphloop.graph.resumes import answer, check_unfinished, recorded, reply_to_question
from graphloop.nodes import Decision, LoopContext, LoopState, ModelLike
from graphloop.nodes.audit import decision_entries

__all__ = ["ResumeOptions", "RunOptions", "command_for", "config_for", "drive", "final", "settled"]


class RunOptions(TypedDict, total=False):
    """The options of `Orchestrator.run` and `stream` (see `run`)."""

    system_prompt: str
    session_messages: Sequence[Mapping[str, Any]] | None
    model_cfg: ModelLike | Iterable[ModelLike] | None
    respond_with_final: bool
    user_role: str
    tool_list: Sequence[str] | None
    confirm_allow: Iterable[str] | None
    confirm_deny: Iterable[str] | None
    thread_id: str | None
    user_id: str | None
    wait: float
    """Seconds to wait for the thread while another run has it (0: `ThreadBusyError` at once)."""


class ResumeOptions(TypedDict, total=False):
    """The options of `Orchestrator.resume` and `stream_resume` (see `resume`)."""

    confirmed: bool | None
    decisions: Sequence[Decision] | None
    answer: str | None
    """The reply to a question pause (`PendingConfirmation.kind == "question"`)."""
    model_cfg: ModelLike | Iterable[ModelLike] | None
    decided_by: str | None
    interrupt_id: str | None
    wait: float
    """Seconds to wait for the thread while another run has it (0: `ThreadBusyError` at once)."""


async def drive(
    graph: LoopGraph, start: LoopState | Command[Any] | None, thread_id: str, context: LoopContext,
    tokens: bool,
) -> AsyncGenerator[RunEvent, None]:
    """Run the graph from `start`, yielding progress events, and `Finished` last."""
    config = config_for(thread_id)
    modes: list[StreamMode] = ["updates", "messages"] if tokens else ["updates"]
    # durability="sync": each step is on disk before the next starts (crash safety)
    async for mode, chunk in graph.astream(start, config, context=context, durability="sync",  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # langgraph's astream is partly untyped
                                           stream_mode=modes):
        for event in event_of(str(mode), chunk):  # pyright: ignore[reportUnknownArgumentType]
            yield event
    snapshot = await graph.aget_state(config)
    if context.ledger is not None:  # every result is in the checkpoint now: the ledger's copies can go
        await in_db_thread(context.ledger.forget_results, thread_id)
    yield Finished(result_of(snapshot.values, snapshot.interrupts, thread_id))


async def settled(events: AsyncGenerator[RunEvent, None]) -> AsyncGenerator[RunEvent, None]:
    """`events`, with `Paused` and `Finished` held back until the run's session is closed.

    So a caller that stops reading at `Paused` (to show the question) leaves nothing open
    and nothing unsaved.
    """
    finished: Finished | None = None
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Finished):
                finished = event
            else:
                yield event
    assert finished is not None, "every run ends with Finished"
    if finished.result.checkpoint is not None:
        yield Paused(finished.result.checkpoint)
    yield finished


async def final(events: AsyncGenerator[RunEvent, None]) -> OrchestratorResult:
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Finished):
                return event.result
    raise AssertionError("every event stream ends with Finished")


async def command_for(
    snapshot: StateSnapshot, thread_id: str, expected: str | None, context: LoopContext,
    options: ResumeOptions,
) -> Command[Any] | None:
    """What to invoke the graph with: the checked and recorded decisions, or None to continue."""
    confirmed, decisions = options.get("confirmed"), options.get("decisions")
    decided = confirmed is not None or decisions is not None or options.get("answer") is not None
    if not snapshot.interrupts:
        check_unfinished(snapshot, thread_id, decided)
        return None
    if pending_of(snapshot.interrupts[0], thread_id).kind == "question":
        return Command(resume=reply_to_question(snapshot, thread_id, expected, options))
    if options.get("answer") is not None:
        raise InvalidDecisionError(
            f"thread {thread_id!r} waits for a decision on tool calls, not an answer; pass "
            "confirmed=True/False or decisions=[...]")
    ledger = context.ledger
    if not decided:
        return Command(resume={"decisions": await in_db_thread(recorded, ledger, snapshot, thread_id, context)})
    shown, chosen = answer(snapshot, thread_id, expected, context, confirmed, decisions)
    if ledger is not None:
        entries = decision_entries(thread_id, snapshot.interrupts[0].id, shown, chosen,
                                   options.get("decided_by"))
        await in_db_thread(ledger.claim_decisions, entries)
    return Command(resume={"decisions": chosen})


def holding(context: LoopContext, thread_id: str, wait: float | None) -> AbstractAsyncContextManager[None]:
    """The thread held for a whole run, from the first read of its state to the last write:
    one driver per thread (`graphloop.checkpointers.drivers`); the graph's own hold, in the
    same task, then lets it through."""
    if context.ledger is None:
        return nullcontext()
    return context.ledger.drivers.adrive(thread_id, wait or 0.0)


def config_for(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}
