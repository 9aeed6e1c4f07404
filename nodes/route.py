"""Routers: functions of state that pick the next node.

Each router's return annotation is the list of its edges: the builder reads the node names
from its `Literal`, and `ToolCalls` names the node its `Send`s go to. So an edge is written once.
One router also reads the run's context: after the model, a turn whose every call may run at
once (`runnable_now`: nothing to refuse, nothing gated) goes straight to its `run_tool` tasks,
and the round has one step fewer; any other turn goes through `execute_tools`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from langgraph.runtime import get_runtime
from langgraph.types import Send

from graphloop.nodes.calls import RequestedCall, unanswered_calls
from graphloop.nodes.context import LoopContext
from graphloop.nodes.execute_tools import runnable_now
from graphloop.nodes.names import (
    ASK_CONFIRMATION,
    COMPACT,
    EXECUTE_TOOLS,
    FINALIZE,
    INTERRUPT_FOR_CONFIRM,
    RUN_TOOL,
)
from graphloop.nodes.policy import exempt_tools
from graphloop.nodes.state import LoopState, ToolJob, policy_of

__all__ = ["AfterTools", "ToolCalls", "route_after_execute", "route_after_model", "route_after_tools"]

ToolCalls = Annotated[list[Send], "run_tool"]
"""One `Send` per call that may run now, each to the node named here."""
AfterTools = Literal["ask_confirmation", "interrupt_for_confirm", "compact", "finalize"]
"""Where a turn goes once its calls that may run have run: the gate, the next round, or the
final answer at the round limit."""


def route_after_model(state: LoopState) -> ToolCalls | Literal["execute_tools", "finalize"]:
    """Tool calls (whatever `finish_reason` said) go to their `run_tool` tasks when every one
    may run at once, else to `execute_tools`; an answer ends."""
    if not unanswered_calls(state["messages"]):
        return FINALIZE
    context = _context()
    ready = runnable_now(state, context) if context is not None else None
    return _jobs(state, ready, direct=True) if ready else EXECUTE_TOOLS


def _context() -> LoopContext | None:
    """The run's context; None when the router is called outside a graph (then every turn
    takes the long way, through `execute_tools`, which needs none to decide)."""
    try:
        runtime: object = get_runtime(LoopContext)
    except RuntimeError:  # outside a runnable
        return None
    context: object = getattr(runtime, "context", None)
    return context if isinstance(context, LoopContext) else None


def route_after_tools(state: LoopState) -> AfterTools:
    """Gated calls go to the gate; then the round limit; else the next round."""
    policy = policy_of(state)
    if any("decision" not in p for p in state.get("pending", [])):
        return ASK_CONFIRMATION if policy["ask_model_to_confirm"] else INTERRUPT_FOR_CONFIRM
    if state.get("rounds", 0) >= policy["max_rounds"]:
        return FINALIZE
    return COMPACT


def route_after_execute(state: LoopState) -> ToolCalls | AfterTools | Literal["__end__"]:
    """A `run_tool` task per call that may run now; when none is left, the gate or the next
    round, or the end when the person dismissed the pause (`END`, as a `Literal` names it)."""
    waiting = {p["id"] for p in state.get("pending", [])}
    jobs = [c for c in unanswered_calls(state["messages"]) if c.id not in waiting]
    if not jobs:
        return "__end__" if state.get("dismissed") else route_after_tools(state)
    return _jobs(state, jobs)


def _jobs(state: LoopState, calls: list[RequestedCall], *, direct: bool = False) -> ToolCalls:
    """A `run_tool` task per call, with what its audit row needs (`direct`: see `ToolJob`)."""
    policy = policy_of(state)
    exempt = sorted(exempt_tools(policy)) if direct else []
    sends: ToolCalls = []
    for c in calls:
        job = ToolJob(id=c.id, name=c.name, args=c.args, round=state.get("rounds", 0),
                      model=state.get("answered_by", ""), user_id=policy.get("user_id"),
                      user_role=policy["user_role"])
        if direct:
            job.update(direct=True, exempt=exempt)
        sends.append(Send(RUN_TOOL, job))
    return sends
