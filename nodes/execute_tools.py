"""Tool calls: `execute_tools` decides what each call of the turn gets, `run_tool` runs one.

`execute_tools` answers, without running anything, every call that may not run: broken
arguments (with the tool's parameters, so the model can fix them), unknown tools, tools
outside the run's role, the same call repeated too often, calls the user rejected or answered
in the tool's place (`respond`), and every call of a dismissed pause. Gated calls without a
decision wait in `pending`. Every other call is sent to its own `run_tool`
task (LangGraph's `Send`): the calls of a turn run in parallel, and each result is saved as
soon as it is there, so after a crash a completed call is not run again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolCall, ToolMessage
from langgraph.runtime import Runtime

from graphloop.checkpointers.ledger import CallStatus, Ledger, ToolCallEntry
from graphloop.nodes.abandon import dismiss_pause
from graphloop.nodes.audit import call_entry, current_thread, ledger_of, not_rerun_message
from graphloop.nodes.calls import RequestedCall, last_turn, requested_calls, unanswered_calls
from graphloop.nodes.config import LoopContext
from graphloop.nodes.gate import allowed_tools, decisions_for, gated_tools, never_tools
from graphloop.nodes.state import IGNORE, Decision, LoopState, PendingCall, Policy, ToolJob, policy_of

__all__ = ["DENIED", "execute_tools", "run_tool"]

logger = logging.getLogger(__name__)

DENIED = "Action denied by user."


def _streak(call: RequestedCall, messages: Sequence[AnyMessage]) -> int:
    """How many turns in a row of this run, this one included, made exactly this call."""
    same = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage):
            if not any(c.name == call.name and c.args == call.args and c.error is None
                       for c in requested_calls(message)):
                break
            same += 1
    return same


def _refusal(
    call: RequestedCall, allowed: Sequence[str], never: frozenset[str], policy: Policy, state: LoopState,
    context: LoopContext,
) -> str | None:
    """Why `call` may not run, as a message for the model; None when it may."""
    available = ", ".join(allowed) or "none"
    tool = context.tools.get(call.name)
    if tool is None:
        return f"Error: unknown tool {call.name!r}. Available tools: {available}."
    if call.name not in allowed:
        return (f"Error: tool {call.name!r} is not available to role {policy['user_role']!r} "
                f"in this run. Available tools: {available}.")
    if call.name in never:
        return (f"Error: the user has chosen never to allow {call.name!r}, so it was not run. "
                "Do not call it again; finish without it, or tell the user what it would do.")
    if call.error is not None:
        parameters = json.dumps(context.tools.schemas([call.name])[0]["function"].get("parameters", {}))
        return (f"Error: your call to {call.name!r} was not run: {call.error}. "
                f"Arguments received: {(call.raw_args or '')[:200]!r}. Call {call.name!r} again "
                f"with a JSON object matching its parameters: {parameters}")
    if context.repeat_limit and (times := _streak(call, state["messages"])) >= context.repeat_limit:
        return (f"Error: you have called {call.name!r} with the same arguments {times} times in "
                "a row, so it was not run again: the result would not change. Use the results "
                "you already have, or call it with different arguments.")
    return None


def _apply(call: RequestedCall, decision: Decision) -> RequestedCall:
    action = decision.get("edited_action")
    if decision["type"] != "edit" or action is None:
        return call
    args = action.get("args")
    return RequestedCall(id=call.id, name=str(action.get("name", call.name)),
                         args=dict(args) if isinstance(args, dict) else call.args)  # pyright: ignore[reportUnknownArgumentType]


def _with_edits(ai: AIMessage, edited: dict[str, RequestedCall]) -> AIMessage:
    """The assistant message showing the calls as they were approved to run."""
    calls = [{**c, "name": edited[c["id"]].name, "args": edited[c["id"]].args}
             if c["id"] in edited else c for c in ai.tool_calls]
    return ai.model_copy(update={"tool_calls": calls})


def execute_tools(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    """Answer the calls that may not run, park gated ones; `route_after_execute` sends the rest."""
    context = runtime.context
    policy = policy_of(state)
    ledger = ledger_of(context)
    decisions = {p["id"]: p["decision"] for p in state.get("pending", []) if "decision" in p}
    if ledger is not None and decisions:  # carried out now: no longer listed as decided
        ledger.remove_from_inbox(current_thread())
    if any(d["type"] == IGNORE for d in decisions.values()):
        return dismiss_pause(state, ledger, current_thread() if ledger is not None else "")
    allowed = allowed_tools(policy, context)
    gated = gated_tools(policy, context)
    never = never_tools(policy)
    replies: list[AnyMessage] = []
    edited: dict[str, RequestedCall] = {}
    waiting: list[PendingCall] = []
    for call in unanswered_calls(state["messages"]):
        decision = decisions.get(call.id)
        if decision is not None and decision["type"] == "edit":
            call = edited[call.id] = _apply(call, decision)
        refusal = _refusal(call, allowed, never, policy, state, context)
        status: CallStatus = "refused"
        if refusal is not None:
            if call.error is not None:
                logger.warning("Malformed tool args for %s from model %s: %s — args: %.200s",
                               call.name, state.get("answered_by"), call.error, call.raw_args)
        elif decision is not None and decision["type"] == "reject":
            note = decision.get("message")
            refusal, status = (f"{DENIED} {note}" if note else DENIED), "rejected"
            logger.info("Tool %s denied by user", call.name)
        elif decision is not None and decision["type"] == "respond":
            logger.info("Tool %s answered by the user in its place", call.name)
            replies.append(ToolMessage(decision.get("message", ""), tool_call_id=call.id, name=call.name))
            _audit_unrun(ledger, state, policy, call, "responded")
        elif decision is None and call.name in gated:
            logger.info("Tool %s blocked — confirmation required", call.name)
            waiting.append(PendingCall(id=call.id, name=call.name, args=call.args,
                                       allowed=decisions_for(policy, context, call.name)))
        if refusal is not None:
            replies.append(ToolMessage(refusal, tool_call_id=call.id, name=call.name, status="error"))
            _audit_unrun(ledger, state, policy, call, status)
    ai, _ = last_turn(state["messages"])
    if edited and ai is not None:
        replies.insert(0, _with_edits(ai, edited))
    # Write only what changed: every write to `messages` counts towards its next full snapshot.
    update: dict[str, Any] = {"messages": replies} if replies else {}
    if waiting != state.get("pending", []):
        update["pending"] = waiting
    return update


def _audit_unrun(ledger: Ledger | None, state: LoopState, policy: Policy, call: RequestedCall,
                 status: CallStatus) -> None:
    if ledger is None:
        return
    job = ToolJob(id=call.id, name=call.name, args=call.args, round=state.get("rounds", 0),
                  model=state.get("answered_by", ""))
    ledger.record_call(call_entry(job, status, policy))


def _as_text(content: str | list[str | dict[str, Any]]) -> str:
    """A tool message's content as the text the model reads; text blocks (MCP tools) joined."""
    if isinstance(content, str):
        return content
    if all(isinstance(b, dict) and b.get("type") == "text" for b in content):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return json.dumps(content, ensure_ascii=False, default=str)


async def run_tool(job: ToolJob, runtime: Runtime[LoopContext]) -> dict[str, list[ToolMessage]]:
    """Run one call, at most once; an exception or a timeout becomes a `Tool error: ...` message.

    With a ledger, the call is claimed first. A call claimed before (the process crashed while
    it ran, or after it ran but before its result was saved) is never run again: the model is
    told so instead.
    """
    ledger = ledger_of(runtime.context)
    if ledger is not None:
        earlier = await asyncio.to_thread(ledger.claim_call, call_entry(job, "running"))
        if earlier is not None:
            return await _claimed_before(ledger, job, earlier)
    started = time.monotonic()
    text, status = await _invoke(job, runtime.context)
    if ledger is not None:
        await asyncio.to_thread(ledger.finish_call, current_thread(), job["id"], status,
                                duration_ms=(time.monotonic() - started) * 1000, result=text)
    return _reply(job, text, "success" if status == "success" else "error")


async def _claimed_before(ledger: Ledger, job: ToolJob, earlier: ToolCallEntry) -> dict[str, list[ToolMessage]]:
    """The answer for a call claimed before: its kept result, or a note that it was not re-run."""
    thread_id = earlier["thread_id"]
    if earlier["status"] == "running":  # it started, then the process stopped: it may have run
        await asyncio.to_thread(ledger.mark_unknown, thread_id, job["id"])
        earlier["status"] = "unknown"
    kept = await asyncio.to_thread(ledger.result, thread_id, job["id"])
    logger.warning("Tool %s call %s was claimed before (%s); not run again%s", job["name"], job["id"],
                   earlier["status"], ", its kept result replayed" if kept is not None else "")
    if kept is not None:
        return _reply(job, kept, "success" if earlier["status"] == "success" else "error")
    return _reply(job, not_rerun_message(earlier), "error")


def _reply(job: ToolJob, text: str, status: Literal["success", "error"]) -> dict[str, list[ToolMessage]]:
    return {"messages": [ToolMessage(text, tool_call_id=job["id"], name=job["name"], status=status)]}


async def _invoke(job: ToolJob, context: LoopContext) -> tuple[str, CallStatus]:
    tool = context.tools.get(job["name"])
    assert tool is not None, "execute_tools answers calls to unknown tools"
    timeout = context.timeout_for(job["name"])
    call = ToolCall(name=job["name"], args=job["args"], id=job["id"], type="tool_call")
    try:
        # invoked with the whole call, a LangChain tool answers with a ToolMessage whose status
        # says whether the tool handled an error itself (MCP tools do)
        result = await asyncio.wait_for(tool.ainvoke(call), timeout)
    except TimeoutError:
        logger.warning("Tool %s timed out after %g s", job["name"], timeout)
        return (f"Tool error: {job['name']!r} did not finish within {timeout:g} s and was "
                "abandoned; try again later, or with a smaller request."), "timeout"
    except Exception as exc:  # any tool failure is data for the model
        logger.warning("Tool %s failed: %s", job["name"], exc)
        return f"Tool error: {exc}", "error"
    message = result if isinstance(result, ToolMessage) else ToolMessage(result, tool_call_id=job["id"])
    text = _as_text(message.content)
    if message.status == "error":
        logger.warning("Tool %s reported an error: %.200s", job["name"], text)
        return text, "error"
    logger.info("Tool %s → %d chars", job["name"], len(text))
    return text, "success"
