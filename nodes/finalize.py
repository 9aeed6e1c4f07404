"""The `finalize` node: end the run with an answer, also when the round limit cut it short."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.runtime import Runtime

from graphloop.checkpointers import ContextBudgetError, ModelCallError
from graphloop.nodes.audit import ledger_of
from graphloop.nodes.calls import is_answer, this_run
from graphloop.nodes.chat import with_unique_id
from graphloop.nodes.compaction import fitted_view
from graphloop.nodes.context import LoopContext
from graphloop.nodes.fallback import call_models
from graphloop.nodes.limits import LimitReached, budget, spent_update, stop_text
from graphloop.nodes.policy import tool_schemas
from graphloop.nodes.state import LoopState, LoopUpdate, policy_of
from graphloop.nodes.usage import ModelCall, recorded, with_earlier_spending

__all__ = ["LIMIT_NOTE", "finalize", "limit_summary"]

logger = logging.getLogger(__name__)

LIMIT_NOTE = (
    "You have used every tool round this task allows. Using only what the tools returned "
    "above, answer the user's request now."
)
"""Sent (not stored) with the final request, so the model knows it must answer now."""


def limit_summary(messages: Sequence[AnyMessage], limit: str) -> str:
    """The original loop's answer at the limit: what each tool of this run returned (`limit`
    names the limit, as `stop_text` words it)."""
    gathered = "\n\n".join(
        f"**{m.name}**: {m.text[:500]}" for m in this_run(messages) if isinstance(m, ToolMessage)
    )
    return f"Reached {limit}. Here is what was gathered:\n\n{gathered}"


async def finalize(state: LoopState, runtime: Runtime[LoopContext]) -> LoopUpdate:
    """Pass an answer through; at the round limit (or a `UsageLimits` one), ask for one without
    tools if that request fits the run's limits, or summarise."""
    messages = state["messages"]
    if messages and is_answer(messages[-1]):
        return {}
    policy = policy_of(state)
    reason = state.get("stopped_by") or "rounds"
    logger.warning("hit the %s limit", reason)
    limit = stop_text(reason, policy.get("limits", {}), policy["max_rounds"])
    calls: list[ModelCall] = []
    if policy["respond_with_final"]:
        try:
            context = runtime.context
            state = await with_earlier_spending(state, ledger_of(context))
            update, view = fitted_view(state, context, [HumanMessage(LIMIT_NOTE)])
            tools = tool_schemas(policy, context)  # listed, with tool_choice "none"
            async with recorded(ledger_of(context), state, "final", budget(state)) as calls:
                reply, model = await call_models(context.models, view, tools, tool_choice="none")
            if reply.text.strip():  # its text only: a call made despite "none" is not kept
                answer = AIMessage(reply.text, id=reply.id, response_metadata=reply.response_metadata,
                                   usage_metadata=reply.usage_metadata)
                return update | spent_update(state, calls) | LoopUpdate(
                    messages=[with_unique_id(answer, messages)], answered_by=model.label, stopped_by=reason)
        except (ModelCallError, ContextBudgetError, LimitReached) as exc:
            logger.warning("final answer at the %s limit failed: %s", reason, exc)
    summary = AIMessage(limit_summary(messages, limit))
    return spent_update(state, calls) | LoopUpdate(messages=[summary], answered_by="graphloop", stopped_by=reason)
