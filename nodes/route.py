"""Routers: pure functions of state that pick the next node."""

from __future__ import annotations

from typing import Literal

from langgraph.types import Send

from graphloop.nodes.calls import unanswered_calls
from graphloop.nodes.names import (
    ASK_CONFIRMATION,
    COMPACT,
    EXECUTE_TOOLS,
    FINALIZE,
    INTERRUPT_FOR_CONFIRM,
    RUN_TOOL,
)
from graphloop.nodes.state import LoopState, ToolJob, policy_of

__all__ = ["route_after_execute", "route_after_model", "route_after_tools"]


def route_after_model(state: LoopState) -> Literal["execute_tools", "finalize"]:
    """Tool calls go to `execute_tools` (whatever `finish_reason` said); an answer ends."""
    return EXECUTE_TOOLS if unanswered_calls(state["messages"]) else FINALIZE


def route_after_tools(
    state: LoopState,
) -> Literal["ask_confirmation", "interrupt_for_confirm", "compact", "finalize", "__end__"]:
    """A dismissed pause ends the run; gated calls go to the gate; then the round limit; else
    the next round."""
    if state.get("dismissed"):
        return "__end__"  # END, as the Literal the return type names
    policy = policy_of(state)
    if any("decision" not in p for p in state.get("pending", [])):
        return ASK_CONFIRMATION if policy["ask_model_to_confirm"] else INTERRUPT_FOR_CONFIRM
    if state.get("rounds", 0) >= policy["max_rounds"]:
        return FINALIZE
    return COMPACT


def route_after_execute(
    state: LoopState,
) -> list[Send] | Literal["ask_confirmation", "interrupt_for_confirm", "compact", "finalize", "__end__"]:
    """A `run_tool` task per call that may run now; when none is left, the gate or the next round."""
    waiting = {p["id"] for p in state.get("pending", [])}
    jobs = [c for c in unanswered_calls(state["messages"]) if c.id not in waiting]
    if not jobs:
        return route_after_tools(state)
    policy = policy_of(state)
    return [Send(RUN_TOOL, ToolJob(id=c.id, name=c.name, args=c.args, round=state.get("rounds", 0),
                                   model=state.get("answered_by", ""), user_id=policy.get("user_id"),
                                   user_role=policy["user_role"]))
            for c in jobs]
