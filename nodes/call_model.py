"""The `call_model` node: one request to the model with the role-filtered tools."""

from __future__ import annotations

import logging
import re

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from graphloop.checkpointers import ContextOverflowError
from graphloop.nodes.audit import ledger_of
from graphloop.nodes.calls import normalize_reply, whole_calls
from graphloop.nodes.chat import with_unique_id
from graphloop.nodes.compaction import compacted_view, fitted_view
from graphloop.nodes.context import LoopContext
from graphloop.nodes.fallback import call_models
from graphloop.nodes.finalize import LIMIT_NOTE
from graphloop.nodes.limits import LimitReached, budget, spent_update
from graphloop.nodes.policy import allowed_tools, tool_schemas
from graphloop.nodes.state import LoopState, LoopUpdate, policy_of
from graphloop.nodes.text_calls import calls_from_text
from graphloop.nodes.usage import Budget, ModelCall, ended, recorded, with_earlier_spending

__all__ = ["OVERFLOW_SHRINK", "call_model", "tighter_budget"]

logger = logging.getLogger(__name__)

OVERFLOW_SHRINK = 0.7
"""After a context-length error, the retry must fit this share of the budget that failed."""

_STATED_LIMIT = re.compile(r"maximum context length is (\d+)", re.IGNORECASE)


def tighter_budget(failed: int, error: str, context: LoopContext) -> int:
    """The budget for the retry: 70% of the one that failed, or less if the server named its limit.

    Example:
        >>> from graphloop.nodes.context import LoopContext
        >>> tighter_budget(10_000, "This model's maximum context length is 8192 tokens",
        ...                LoopContext.create())
        6144
    """
    budget = int(failed * OVERFLOW_SHRINK)
    if match := _STATED_LIMIT.search(error):
        budget = min(budget, int(int(match.group(1)) * context.compaction.trigger_fraction))
    return budget


def _budget(state: LoopState, context: LoopContext) -> Budget | None:
    """The round's budget: its requests must leave room for a final answer after them when
    the run answers at its limit (`graphloop.nodes.limits`); None without limits."""
    if not policy_of(state).get("limits"):
        return None
    note = context.counter.message(HumanMessage(LIMIT_NOTE)) if policy_of(state)["respond_with_final"] else None
    return budget(state, final_note=note)


async def call_model(state: LoopState, runtime: Runtime[LoopContext]) -> LoopUpdate:
    """Send the compacted view and the run's tool schemas; append the model's reply.

    Models are tried along the chain (see `graphloop.nodes.fallback`). A context-length error
    is answered once, within the round, by compacting to a tighter budget and sending again to
    the same model.
    """
    context = runtime.context
    state = await with_earlier_spending(state, ledger_of(context))
    policy = policy_of(state)
    tools = tool_schemas(policy, context)
    model = context.primary
    rounds = state.get("rounds", 0) + 1
    record = state.get("compaction")
    logger.info("round %d / %d model=%s %d tokens", rounds, policy["max_rounds"], model.label,
                record["tokens_after"] if record else -1)
    update: LoopUpdate = {}
    calls: list[ModelCall] = []
    try:
        async with recorded(ledger_of(context), state, "turn", _budget(state, context)) as calls:
            try:
                reply, model = await call_models(context.models, compacted_view(state, context), tools)
            except ContextOverflowError as exc:
                ended("retried")
                tokens = tighter_budget(record["budget"] if record else context.budget_tokens, str(exc), context)
                logger.warning("%s; compacting to %d tokens and retrying once", exc, tokens)
                update, view = fitted_view(state, context, budget=tokens)
                same = [m for m in context.models if m.label == exc.label] or [model]
                reply, model = await call_models(same, view, tools)
    except LimitReached as stop:  # no reply: the route goes to `finalize`
        return {"stopped_by": stop.reason, **spent_update(state, calls)}
    history = state["messages"]
    reply = whole_calls(with_unique_id(reply, history))  # a call cut off mid-stream does not run
    if model.text_tool_calls:  # a call written as text, by a model known to do so
        reply = calls_from_text(reply, allowed_tools(policy, context))
    reply = normalize_reply(reply, history, context.tools.names)
    update |= LoopUpdate(messages=[reply], rounds=rounds) | spent_update(state, calls)
    if model.label != state.get("answered_by"):  # written when it changes: a row fewer a round
        update["answered_by"] = model.label
    return update
