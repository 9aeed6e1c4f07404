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

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.runtime import Runtime

from graphloop.checkpointers import UNSTORABLE, CallStatus, Ledger, ToolCallEntry, call_hash, in_db_thread
from graphloop.nodes.abandon import dismiss_pause
from graphloop.nodes.audit import call_entry, current_thread, ledger_of, not_rerun_message
from graphloop.nodes.calls import RequestedCall, last_turn, requested_calls, unanswered_calls
from graphloop.nodes.context import LoopContext
from graphloop.nodes.invoke import follow_late, run_call
from graphloop.nodes.policy import allowed_tools, decisions_for, gated_tools, never_tools
from graphloop.nodes.replies import readable, tool_reply
from graphloop.nodes.state import (
    IGNORE,
    Decision,
    LoopState,
    LoopUpdate,
    PendingCall,
    Policy,
    ToolJob,
    policy_of,
)
from graphloop.nodes.tracing import SpanLike, capture_content, captured, failed, span

__all__ = ["CHANGED", "DENIED", "NO_RECORD", "execute_tools", "run_tool", "runnable_now"]

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


def _unknown_tool(name: str, available: Sequence[str]) -> str:
    return f"Error: unknown tool {name!r}. Available tools: {', '.join(available) or 'none'}."


def _refusal(
    call: RequestedCall, allowed: Sequence[str], never: frozenset[str], policy: Policy, state: LoopState,
    context: LoopContext,
) -> str | None:
    """Why `call` may not run, as a message for the model; None when it may."""
    available = ", ".join(allowed) or "none"
    tool = context.tools.get(call.name)
    if tool is None:
        return _unknown_tool(call.name, allowed)
    if call.name not in allowed:
        return (f"Error: tool {call.name!r} is not available to role {policy['user_role']!r} "
                f"in this run. Available tools: {available}.")
    if call.name in never:
        return (f"Error: the user has chosen never to allow {call.name!r}, so it was not run. "
                "Do not call it again; finish without it, or tell the user what it would do.")
    if call.error is not None:
        logger.warning("Malformed tool args for %s from model %s: %s — args: %.200s",
                       call.name, state.get("answered_by"), call.error, call.raw_args)
        parameters = json.dumps(context.tools.schemas([call.name])[0]["function"].get("parameters", {}))
        return (f"Error: your call to {call.name!r} was not run: {call.error}. "
                f"Arguments received: {(call.raw_args or '')[:200]!r}. Call {call.name!r} again "
                f"with a JSON object matching its parameters: {parameters}")
    if (halves := UNSTORABLE.findall(json.dumps(call.args, ensure_ascii=False))):
        return (f"Error: your call to {call.name!r} was not run: its arguments hold "
                f"{readable(''.join(dict.fromkeys(halves)))}, half of a UTF-16 surrogate pair and not a "
                "character, which cannot be kept exactly. Call it again with text only.")
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


NO_RECORD = ("Not run: no decision for this call is on record, so it was not run. Ask the user "
             "again if it is still needed.")
"""A decision in the state that the ledger never recorded (a forged state update)."""

CHANGED = ("Not run: the call changed after the user decided on it, so it was not run. Ask the "
           "user again about the call you want.")
"""An approved call whose tool or arguments differ from what the person was shown."""


@dataclass(frozen=True)
class _Outcome:
    """What a person's decision makes of a call: a call to check and run, or an answer."""

    call: RequestedCall | None = None
    text: str = ""
    status: CallStatus = "refused"


Record = tuple[Decision, str | None]
"""A decision, with the hash of the call as the person was shown it (when the ledger has it)."""


def _carry_out(call: RequestedCall, record: Record | None) -> _Outcome:
    """The outcome of the decision on record for `call` (None: no record)."""
    if record is None:
        return _Outcome(text=NO_RECORD)
    decision, asked = record
    kind = decision["type"]
    if kind == "reject":
        note = decision.get("message")
        return _Outcome(text=f"{DENIED} {note}" if note else DENIED, status="rejected")
    if kind == "respond":
        return _Outcome(text=decision.get("message", ""), status="responded")
    if kind == "edit":
        return _Outcome(call=_apply(call, decision))
    if asked is not None and call_hash(call.name, call.args) != asked:
        return _Outcome(text=CHANGED)
    return _Outcome(call=call)


def _decisions_on_record(state: LoopState, ledger: Ledger | None, thread_id: str) -> dict[str, Record | None]:
    """Each decided call's decision: the ledger's record where there is a ledger (the state's
    copy could be forged, or lost a race), else the state's."""
    given = {p["id"]: p["decision"] for p in state.get("pending", []) if "decision" in p}
    if ledger is None or not given:
        return {call_id: (decision, None) for call_id, decision in given.items()}
    rows = {r["call_id"]: r for r in ledger.decisions_of(thread_id, list(given))}
    return {call_id: (cast(Decision, json.loads(rows[call_id]["payload"])), rows[call_id]["call_hash"])
            if call_id in rows else None for call_id in given}


def runnable_now(state: LoopState, context: LoopContext) -> list[RequestedCall] | None:
    """The turn's calls when `execute_tools` would have nothing to do: nothing waits for a
    decision, and every call may run at once (none refused, none gated); else None.

    Then the router sends them straight to their `run_tool` tasks, and the round saves a step.
    """
    if state.get("pending") or state.get("dismissed"):
        return None
    policy = policy_of(state)
    allowed, gated, never = allowed_tools(policy, context), gated_tools(policy, context), never_tools(policy)
    calls = unanswered_calls(state["messages"])
    if any(c.error is not None for c in calls):  # `execute_tools` explains (and logs) it, once
        return None
    if any(c.name in gated or _refusal(c, allowed, never, policy, state, context) is not None for c in calls):
        return None
    return calls


def execute_tools(state: LoopState, runtime: Runtime[LoopContext]) -> LoopUpdate:
    """Answer the calls that may not run, park gated ones; `route_after_execute` sends the rest."""
    context = runtime.context
    policy = policy_of(state)
    ledger = ledger_of(context)
    thread_id = current_thread() if ledger is not None else ""
    decided = _decisions_on_record(state, ledger, thread_id)
    if any(d is not None and d[0]["type"] == IGNORE for d in decided.values()):
        return dismiss_pause(state, ledger, thread_id)  # which takes the thread out of the inbox
    if ledger is not None and decided:  # carried out now: no longer listed as decided
        ledger.remove_from_inbox(thread_id)
    allowed, gated, never = allowed_tools(policy, context), gated_tools(policy, context), never_tools(policy)
    replies: list[AnyMessage] = []
    edited: dict[str, RequestedCall] = {}
    waiting: list[PendingCall] = []
    for call in unanswered_calls(state["messages"]):
        outcome = _carry_out(call, decided[call.id]) if call.id in decided else _Outcome(call=call)
        if outcome.call is not None and outcome.call is not call:
            edited[call.id] = outcome.call
        text = outcome.text if outcome.call is None else _refusal(outcome.call, allowed, never, policy, state, context)
        if text is None and call.id not in decided and call.name in gated:
            logger.info("Tool %s blocked — confirmation required", call.name)
            waiting.append(PendingCall(id=call.id, name=call.name, args=call.args,
                                       allowed=decisions_for(policy, context, call.name)))
        elif text is not None:
            logger.info("Tool %s not run (%s): %.200s", call.name, outcome.status, text)
            replies.append(tool_reply(text, call_id=call.id, name=call.name,
                                      status="success" if outcome.status == "responded" else "error"))
            _audit_unrun(ledger, state, policy, outcome.call or call, outcome.status)
    ai, _ = last_turn(state["messages"])
    if edited and ai is not None:
        replies.insert(0, _with_edits(ai, edited))
    # Write only what changed: every write to `messages` counts towards its next full snapshot.
    update = LoopUpdate(messages=replies) if replies else LoopUpdate()
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


async def run_tool(job: ToolJob, runtime: Runtime[LoopContext]) -> LoopUpdate:
    """Run one call, at most once; an exception or a timeout becomes a `Tool error: ...` message
    (`graphloop.nodes.invoke`, which also says what becomes of a sync call past its timeout).

    With a ledger, the call is claimed first. A call claimed before (the process crashed while
    it ran, or after it ran but before its result was saved) is never run again: the model is
    told so instead.
    """
    ledger = ledger_of(runtime.context)
    if job.get("direct") and (refusal := _gate_here(job, runtime.context)) is not None:
        if ledger is not None:
            await in_db_thread(ledger.record_call, call_entry(job, "refused"))
        return _reply(job, refusal, "error")
    late: ToolCallEntry | None = None
    if ledger is not None:
        earlier, late = await in_db_thread(_claim, ledger, job, call_entry(job, "running"))
        if earlier is not None:
            return await _claimed_before(ledger, job, earlier)
    started = time.monotonic()
    with span(f"execute_tool {job['name']}", _tool_attributes(job)) as traced:
        outcome = await run_call(job, runtime.context, late)
        _traced_outcome(traced, outcome.status, outcome.text)
    if ledger is not None:
        await in_db_thread(ledger.finish_call, current_thread(), job["id"], outcome.status,
                           duration_ms=(time.monotonic() - started) * 1000, result=outcome.text)
    follow_late(ledger, job, outcome, started)  # a sync call still running past its timeout
    return _reply(job, outcome.text, "success" if outcome.status == "success" else "error")


def _tool_attributes(job: ToolJob) -> dict[str, str]:
    """A tool span's attributes (`graphloop.nodes.tracing`): its arguments only with capture on."""
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": job["name"],
                  "gen_ai.tool.call.id": job["id"]}
    if capture_content():
        attributes["gen_ai.tool.call.arguments"] = captured(json.dumps(job["args"], ensure_ascii=False, default=str))
    return attributes


def _traced_outcome(traced: SpanLike, status: str, text: str) -> None:
    traced.set_attribute("graphloop.status", status)
    if status != "success":
        failed(traced, f"tool_{status}")
    if capture_content():
        traced.set_attribute("gen_ai.tool.call.result", captured(text))


def _claim(ledger: Ledger, job: ToolJob, entry: ToolCallEntry) -> tuple[ToolCallEntry | None, ToolCallEntry | None]:
    """Claim the call (flushed), then look for a `late` twin of it, in one trip to the database
    thread: the earlier claim if there is one, else None and the twin if there is one."""
    earlier = ledger.claim_call(entry)
    if earlier is not None:
        return earlier, None
    return None, ledger.late_twin(current_thread(), job["name"], job["args"])


def _gate_here(job: ToolJob, context: LoopContext) -> str | None:
    """Why a call routed straight from the model's turn may not run in this process: a
    process resuming after a crash may lack the tool, or gate it (it may add gates)."""
    if context.tools.get(job["name"]) is None:
        return _unknown_tool(job["name"], context.tools.names)
    if job["name"] in context.confirm_required and job["name"] not in job.get("exempt", []):
        return (f"Not run: {job['name']!r} now needs the user's confirmation, so it was not run. Call "
                "it again if it is still needed, and the user will be asked.")
    return None


async def _claimed_before(ledger: Ledger, job: ToolJob, earlier: ToolCallEntry) -> LoopUpdate:
    """The answer for a call claimed before: its kept result, or a note that it was not re-run."""
    thread_id = earlier["thread_id"]
    if earlier["status"] == "running":  # it started, then the process stopped: it may have run
        await in_db_thread(ledger.mark_unknown, thread_id, job["id"])
        earlier["status"] = "unknown"
    kept = await in_db_thread(ledger.result, thread_id, job["id"])
    logger.warning("Tool %s call %s was claimed before (%s); not run again%s", job["name"], job["id"],
                   earlier["status"], ", its kept result replayed" if kept is not None else "")
    if kept is not None:
        return _reply(job, kept, "success" if earlier["status"] == "success" else "error")
    return _reply(job, not_rerun_message(earlier), "error")


def _reply(job: ToolJob, text: str, status: Literal["success", "error"]) -> LoopUpdate:
    return {"messages": [tool_reply(text, call_id=job["id"], name=job["name"], status=status)]}
