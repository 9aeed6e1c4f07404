"""What a run of the Orchestrator does around the graph: its events, streamed under the run's
span (`graphloop.nodes.tracing`), the span's attributes, and the run's last ledger work.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, cast

from graphloop.checkpointers import Ledger
from graphloop.graph.options import ResumeOptions, RunOptions
from graphloop.graph.results import ModelReply, OrchestratorResult, RunEvent, Usage, event_of
from graphloop.nodes import SpanLike, step_in

__all__ = ["describe_run", "run_attributes", "run_ended", "run_events"]


async def run_events(stream: AsyncIterator[tuple[str, Any]], answered_by: str, traced: SpanLike) -> AsyncGenerator[RunEvent, None]:
    """The graph's stream as events. Each step runs with the run's span current, so the spans
    of its nodes, model calls and tool calls are the run's children; never while an event is
    with the caller (an async generator's steps may run in the caller's contexts)."""
    async with aclosing(cast(AsyncGenerator[tuple[str, Any], None], stream)) as steps:
        while True:
            with step_in(traced):
                try:
                    mode, chunk = await anext(steps)
                except StopAsyncIteration:
                    return
            for event in event_of(str(mode), chunk, answered_by):
                answered_by = event.model if isinstance(event, ModelReply) else answered_by
                yield event


def run_attributes(thread_id: str, run_id: str, options: RunOptions | ResumeOptions) -> dict[str, Any]:
    """The run span's attributes as it starts: what it is, and for a resume the decisions."""
    decided: list[str] = []
    if (decisions := options.get("decisions")) is not None:
        decided = [str(cast(Mapping[str, Any], d).get("type")) for d in decisions]
    elif (confirmed := options.get("confirmed")) is not None:
        decided = ["approve" if confirmed else "reject"]
    elif options.get("answer") is not None:
        decided = ["answer"]
    return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "graphloop",
            "graphloop.thread_id": thread_id, "graphloop.run_id": run_id, **(
                {"graphloop.decisions": decided} if decided else {})}


def describe_run(traced: SpanLike, result: OrchestratorResult) -> None:
    """The run span's attributes as it ends: paused or not, the limit it stopped at, its usage."""
    traced.set_attribute("graphloop.paused", result.checkpoint is not None)
    if result.checkpoint is not None:
        traced.set_attribute("graphloop.interrupt_id", result.checkpoint.interrupt_id)
    if result.stopped_by is not None:
        traced.set_attribute("graphloop.stopped_by", result.stopped_by)
    if result.usage is not None:
        traced.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
        traced.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)


def run_ended(ledger: Ledger, thread_id: str, run_id: str, paused: bool) -> Usage:
    """A run's last ledger work, in one trip: its kept results go (flushed when it paused), and
    its model calls are summed."""
    ledger.forget_results(thread_id, flush=paused)
    return Usage.of(ledger.usage(thread_id=thread_id, run_id=run_id, by="model"))
