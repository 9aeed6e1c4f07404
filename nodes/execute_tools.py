"""The `execute_tools` node: run every call that may run now, in parallel.

Every failure becomes a tool message the model can act on: broken arguments, unknown tools,
tools outside the run's role, exceptions. Gated calls without a decision are set aside in
`pending` for the confirmation gate; decided ones run (approve, edit) or are refused (reject).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langgraph.runtime import Runtime

from graphloop.nodes.calls import RequestedCall, last_turn, unanswered_calls
from graphloop.nodes.config import LoopContext
from graphloop.nodes.state import Decision, LoopState, PendingCall, policy_of
from graphloop.nodes.toolbox import ToolBox

__all__ = ["DENIED", "execute_tools", "run_tool"]

logger = logging.getLogger(__name__)

DENIED = "Action denied by user."


def _refusal(call: RequestedCall, allowed: Sequence[str], box: ToolBox, role: str) -> str | None:
    """Why `call` may not run, as a message for the model; None when it may."""
    available = ", ".join(allowed) or "none"
    if call.error is not None:
        return (
            f"Error: your call to {call.name!r} was not run: {call.error}. "
            f"Arguments received: {(call.raw_args or '')[:200]!r}. "
            f"Call {call.name!r} again with a JSON object of its parameters."
        )
    if box.get(call.name) is None:
        return f"Error: unknown tool {call.name!r}. Available tools: {available}."
    if call.name not in allowed:
        return (
            f"Error: tool {call.name!r} is not available to role {role!r} in this run. "
            f"Available tools: {available}."
        )
    return None


def _as_text(result: object) -> str:
    if isinstance(result, str):
        return result
    return json.dumps(result, ensure_ascii=False, default=str)


async def run_tool(box: ToolBox, call: RequestedCall) -> ToolMessage:
    """Run one checked call; an exception becomes a `Tool error: ...` message."""
    tool = box.get(call.name)
    assert tool is not None  # checked by _refusal
    try:
        result = await tool.ainvoke(call.args)
    except Exception as exc:  # any tool failure is data for the model
        logger.warning("Tool %s failed: %s", call.name, exc)
        return ToolMessage(f"Tool error: {exc}", tool_call_id=call.id, name=call.name,
                           status="error")
    text = _as_text(result)
    logger.info("Tool %s → %d chars", call.name, len(text))
    return ToolMessage(text, tool_call_id=call.id, name=call.name)


def _apply(call: RequestedCall, decision: Decision) -> RequestedCall:
    if decision["type"] != "edit":
        return call
    action = decision.get("edited_action", {})
    name = action.get("name", call.name)
    args = action.get("args", call.args)
    return RequestedCall(id=call.id, name=str(name),
                         args=dict(args) if isinstance(args, dict) else call.args)  # pyright: ignore[reportUnknownArgumentType]


def _with_edits(ai: AIMessage, edited: dict[str, RequestedCall]) -> AIMessage:
    """The assistant message showing the calls as they were approved to run."""
    calls = [
        {**c, "name": edited[c["id"]].name, "args": edited[c["id"]].args}
        if c["id"] in edited else c
        for c in ai.tool_calls
    ]
    return ai.model_copy(update={"tool_calls": calls})


async def execute_tools(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    """Run the latest turn's calls that need no decision or have one; park the rest."""
    context = runtime.context
    policy = policy_of(state)
    allowed = context.allowed_tools(policy)
    gated = context.gated_tools(policy)
    decisions = {p["id"]: p["decision"] for p in state.get("pending", []) if "decision" in p}
    calls = unanswered_calls(state["messages"])

    replies: dict[str, ToolMessage] = {}
    jobs: list[RequestedCall] = []
    edited: dict[str, RequestedCall] = {}
    waiting: list[PendingCall] = []
    for call in calls:
        decision = decisions.get(call.id)
        if decision is not None:
            call = _apply(call, decision)
            if decision["type"] == "edit":
                edited[call.id] = call
        refusal = _refusal(call, allowed, context.tools, policy["user_role"])
        if refusal is not None:
            if call.error is not None:
                logger.warning("Malformed tool args for %s from model %s: %s — args: %.200s",
                               call.name, state.get("answered_by"), call.error, call.raw_args)
            replies[call.id] = ToolMessage(refusal, tool_call_id=call.id, name=call.name,
                                           status="error")
        elif decision is not None and decision["type"] == "reject":
            note = decision.get("message")
            text = f"{DENIED} {note}" if note else DENIED
            logger.info("Tool %s denied by user", call.name)
            replies[call.id] = ToolMessage(text, tool_call_id=call.id, name=call.name,
                                           status="error")
        elif decision is None and call.name in gated:
            logger.info("Tool %s blocked — confirmation required", call.name)
            waiting.append(PendingCall(id=call.id, name=call.name, args=call.args))
        else:
            jobs.append(call)

    for message in await asyncio.gather(*(run_tool(context.tools, job) for job in jobs)):
        replies[message.tool_call_id] = message
    out: list[AnyMessage] = []
    ai, _ = last_turn(state["messages"])
    if edited and ai is not None:
        out.append(_with_edits(ai, edited))
    out += [replies[c.id] for c in calls if c.id in replies]
    return {"messages": out, "pending": waiting}
