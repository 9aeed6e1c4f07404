"""What each model call used: tokens in and out, how long it took, and how it ended.

Every request graphloop sends to a model is one `ModelCall`: the round's reply, a retry, a
fallback, the confirmation question, the final answer. Its tokens are what the server
reported (`usage` in the reply; in the last chunk of a stream, which graphloop asks for with
`stream_options.include_usage`), or, when a server reports none, graphloop's own exact count
of the request and the reply (`counted`). The reply carries them as LangChain's
`usage_metadata`, and `response_metadata["usage"]` says `"reported"` or `"counted"`.

A node sends its requests inside `recording()`, then `save_calls` writes them to the ledger's
`model_calls` table in one trip, beside the tool-call audit.

Example:
    >>> with recording() as calls:
    ...     _ = note(ModelCall("primary", "answered", 120, 8, counted=False, latency_ms=310.0))
    >>> [(c.model, c.input_tokens + c.output_tokens) for c in calls]
    [('primary', 128)]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata

from graphloop.checkpointers import Ledger, ModelCallEntry, in_db_thread, now
from graphloop.nodes.audit import current_thread, current_user, run_settings
from graphloop.nodes.limits import LimitReached, caught_up
from graphloop.nodes.models import ModelConfig
from graphloop.nodes.state import LoopState, StopReason, policy_of
from graphloop.nodes.tokens import counter_for
from graphloop.nodes.tracing import failed, span

__all__ = ["RUN_KEY", "Budget", "ModelCall", "Outcome", "Purpose", "current_run", "ended", "measured", "note", "recorded",
           "recording", "requested", "save_calls", "with_earlier_spending"]

Outcome = Literal["answered", "retried", "failed", "fallback"]
"""How a request ended: its reply was used; it failed (or was empty) and the same model was
asked again; it failed and the chain stopped; it failed and the next model was asked."""

Purpose = Literal["turn", "question", "final"]
"""What the request was for: a round of the loop, the confirmation question, the final answer."""

RUN_KEY = "__graphloop_run"
"""The `configurable` key naming the run a call belongs to (the Orchestrator sets it; a served
graph's `run_id` is used when it is absent). Its `__` keeps it out of checkpoint metadata."""


@dataclass
class ModelCall:
    """One request to one model."""

    model: str
    """The model's label (never its key)."""
    outcome: Outcome
    input_tokens: int | None
    """None when the request failed before a reply."""
    output_tokens: int | None
    counted: bool
    """True when graphloop counted the tokens because the server reported none."""
    latency_ms: float
    error: str | None = None
    """The type of the error it failed with (for its span), if it failed."""
    started_at: str = ""
    """When it was sent (`now()`)."""


Budget = Callable[[int, Sequence[ModelCall]], StopReason | None]
"""Given a request's tokens and the calls a node made so far, the limit it would pass
(`graphloop.nodes.limits.budget`)."""


@dataclass
class _Recording:
    calls: list[ModelCall]
    budget: Budget | None


_recording: ContextVar[_Recording | None] = ContextVar("graphloop_model_calls", default=None)


@contextmanager
def recording(budget: Budget | None = None) -> Generator[list[ModelCall], None, None]:
    """Collect the `ModelCall`s made inside the block (in this task), in order; with a
    `budget` (`graphloop.nodes.limits`), a request that would pass it raises `LimitReached`
    before it is sent."""
    calls: list[ModelCall] = []
    token = _recording.set(_Recording(calls, budget))
    try:
        yield calls
    finally:
        _recording.reset(token)


def note(call: ModelCall) -> ModelCall:
    """Add `call` to the block `recording` now, if any; return it (its outcome may change)."""
    current = _recording.get()
    if current is not None:
        current.calls.append(call)
    return call


@contextmanager
def requested(model: ModelConfig, tokens: Callable[[], int]) -> Generator[ModelCall, None, None]:
    """One request to `model`: checked against the block's budget (`tokens` counts it, only
    then), noted as a `ModelCall` (`failed` until the block says how it ended), timed, and
    traced as a `chat <model>` span (`graphloop.nodes.tracing`)."""
    current = _recording.get()
    if current is not None and current.budget is not None:
        if (reason := current.budget(tokens(), current.calls)) is not None:
            raise LimitReached(reason)
    call = note(ModelCall(model.label, "failed", None, None, counted=False, latency_ms=0.0, started_at=now()))
    started = time.monotonic()
    where = urlsplit(model.base_url)
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model.model_name,
                  "graphloop.model_label": model.label, "server.address": where.hostname or "",
                  **({"server.port": where.port} if where.port else {})}
    with span(f"chat {model.model_name}", attributes) as traced:
        try:
            yield call
        finally:
            call.latency_ms = (time.monotonic() - started) * 1000
            traced.set_attribute("graphloop.outcome", call.outcome)
            if call.input_tokens is not None and call.output_tokens is not None:
                traced.set_attribute("gen_ai.usage.input_tokens", call.input_tokens)
                traced.set_attribute("gen_ai.usage.output_tokens", call.output_tokens)
                traced.set_attribute("graphloop.usage_counted", call.counted)
            if call.error is not None:
                failed(traced, call.error)


def ended(outcome: Outcome) -> None:
    """Say how the latest call noted in this block ended, once the chain decided what to do
    about it (it was noted `failed`, or `answered` with an empty reply)."""
    current = _recording.get()
    if current is not None and current.calls:
        current.calls[-1].outcome = outcome


def measured(reply: AIMessage, messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]],
             model_name: str) -> tuple[AIMessage, int, int, bool]:
    """`reply` with `usage_metadata` set, its input and output tokens, and whether they were
    counted: the server's figures when they can be right (`_credible`), else graphloop's count
    of the request (messages and tool schemas) and of the reply."""
    reported = reply.usage_metadata
    if reported and _credible(reported.get("input_tokens"), reported.get("output_tokens")):
        marked = reply.model_copy(update={"response_metadata": {**reply.response_metadata, "usage": "reported"}})
        return marked, int(reported.get("input_tokens") or 0), int(reported.get("output_tokens") or 0), False
    counter = counter_for(model_name)
    tokens_in, tokens_out = counter.request(messages, tools), counter.message(reply)
    usage = UsageMetadata(input_tokens=tokens_in, output_tokens=tokens_out, total_tokens=tokens_in + tokens_out)
    # the server's own figures (in `token_usage`) go: junk such as a 20-digit count could not
    # even be stored in a checkpoint
    metadata = {k: v for k, v in reply.response_metadata.items() if k != "token_usage"}
    counted = reply.model_copy(update={"usage_metadata": usage, "response_metadata": {**metadata, "usage": "counted"}})
    return counted, tokens_in, tokens_out, True


_MOST_TOKENS = 100_000_000
"""More tokens than any request or reply could have: a figure beyond it (or below 0) is junk."""


def _credible(tokens_in: object, tokens_out: object) -> bool:
    """Whether a server's figures can be used: whole numbers from 0 to `_MOST_TOKENS`, not both
    0 (a server without usage that sends zeros). Anything else is counted instead."""
    figures = [f for f in (tokens_in or 0, tokens_out or 0) if isinstance(f, int) and 0 <= f <= _MOST_TOKENS]
    return len(figures) == 2 and sum(figures) > 0


def current_run() -> str:
    """The run the calls belong to: graphloop's run key, else a served run's `run_id`, else ""."""
    settings = run_settings()
    return str(settings.get(RUN_KEY) or settings.get("run_id") or "")


def _rows(calls: Sequence[ModelCall], state: LoopState, purpose: Purpose) -> list[ModelCallEntry]:
    """The ledger rows of `calls`, with the thread, the run, the round and the user of `state`."""
    thread_id, run_id = current_thread(), current_run()
    user_id = policy_of(state).get("user_id") or current_user()
    loop_round = state.get("rounds", 0) + (purpose == "turn")  # a turn's call makes the next round
    return [ModelCallEntry(thread_id=thread_id, run_id=run_id, round=loop_round, model=c.model, purpose=purpose,
                           outcome=c.outcome, input_tokens=c.input_tokens, output_tokens=c.output_tokens,
                           counted=c.counted, latency_ms=round_ms(c.latency_ms), started_at=c.started_at or now(),
                           user_id=user_id)
            for c in calls]


async def save_calls(ledger: Ledger | None, calls: Sequence[ModelCall], state: LoopState, purpose: Purpose) -> None:
    """Write `calls` to the ledger's `model_calls` table, in one trip to the database thread."""
    if ledger is not None and calls:
        await in_db_thread(ledger.record_model_calls, _rows(calls, state, purpose))


@asynccontextmanager
async def recorded(ledger: Ledger | None, state: LoopState, purpose: Purpose,
                   budget: Budget | None = None) -> AsyncGenerator[list[ModelCall], None]:
    """Record the model calls made inside the block (yielded, as they are made; each checked
    against `budget`), then save them (`save_calls`): also when the block fails, unless saving
    fails too (the block's error is the one raised). A cancelled block cannot wait for the
    database thread: its calls are written from here, at once (a short write, and rare)."""
    with recording(budget) as calls:
        try:
            yield calls
        except asyncio.CancelledError:
            if ledger is not None and calls:
                with suppress(Exception):
                    ledger.record_model_calls(_rows(calls, state, purpose))
            raise
        except Exception:
            with suppress(Exception):
                await save_calls(ledger, calls, state, purpose)
            raise
        await save_calls(ledger, calls, state, purpose)


async def with_earlier_spending(state: LoopState, ledger: Ledger | None) -> LoopState:
    """`state` with the requests of an earlier round that failed whole added to what its task
    spent (`graphloop.nodes.limits.caught_up`): for a run with limits, one trip to the ledger."""
    if ledger is None or not policy_of(state).get("limits"):
        return state
    return await in_db_thread(caught_up, state, ledger, current_thread())


def round_ms(latency_ms: float) -> float:
    """Milliseconds to a tenth: what a person reads, and no noise in the table."""
    return float(f"{latency_ms:.1f}")
