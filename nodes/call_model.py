"""The `call_model` node: one request to the model with the role-filtered tools."""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime

from graphloop.nodes.chat import call_chat_model, with_unique_id
from graphloop.nodes.config import LoopContext
from graphloop.nodes.state import LoopState, policy_of
from graphloop.nodes.view import render_view

__all__ = ["call_model"]

logger = logging.getLogger(__name__)


async def call_model(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    """Send the compacted view and the run's tool schemas; append the model's reply."""
    context = runtime.context
    policy = policy_of(state)
    record = state.get("compaction")
    view = render_view(state["messages"], set(record["cleared"]) if record else ())
    tools = context.tools.schemas(context.allowed_tools(policy))
    model = context.primary
    rounds = state.get("rounds", 0) + 1
    logger.info(
        "round %d / %d model=%s ~%d tokens",
        rounds, policy["max_rounds"], model.label, record["tokens_after"] if record else -1,
    )
    reply = with_unique_id(await call_chat_model(model, view, tools), state["messages"])
    return {"messages": [reply], "rounds": rounds, "answered_by": model.label}
