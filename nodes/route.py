"""Routers: pure functions of state that pick the next node."""

from __future__ import annotations

from typing import Literal

from graphloop.nodes.calls import unanswered_calls
from graphloop.nodes.names import ASK_CONFIRMATION, COMPACT, EXECUTE_TOOLS, FINALIZE, INTERRUPT_FOR_CONFIRM
from graphloop.nodes.state import LoopState, policy_of

__all__ = ["route_after_model", "route_after_tools"]


def route_after_model(state: LoopState) -> Literal["execute_tools", "finalize"]:
    """Tool calls go to `execute_tools` (whatever `finish_reason` said); an answer ends."""
    return EXECUTE_TOOLS if unanswered_calls(state["messages"]) else FINALIZE


def route_after_tools(
    state: LoopState,
) -> Literal["ask_confirmation", "interrupt_for_confirm", "compact", "finalize"]:
    """Gated calls go to the gate; then the round limit; else the next round."""
    policy = policy_of(state)
    if any("decision" not in p for p in state.get("pending", [])):
        return ASK_CONFIRMATION if policy["ask_model_to_confirm"] else INTERRUPT_FOR_CONFIRM
    if state.get("rounds", 0) >= policy["max_rounds"]:
        return FINALIZE
    return COMPACT
