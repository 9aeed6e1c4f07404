"""Calls a person never let run: new input while paused, a dismissed pause.

Every call of an assistant message is answered before the next model request (OpenAI refuses a
tool call without its result), and a gated call is only ever answered by graphloop: a tool
message a client sends for a call that waits in `pending` (Agent Chat UI sends
"Successfully handled tool call." when the person types instead of deciding) is replaced by
the truth, that the call was not run. Such calls are audited as `abandoned` and the thread
leaves the inbox.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, AnyMessage, RemoveMessage, ToolMessage

from graphloop.checkpointers import Ledger
from graphloop.nodes.audit import call_entry, current_thread, not_rerun_message
from graphloop.nodes.calls import RequestedCall, requested_calls, unanswered_calls
from graphloop.nodes.state import LoopState, LoopUpdate, ToolJob, policy_of

__all__ = ["DISMISSED", "WENT_ON", "answer_as_not_run", "dismiss_pause", "settle_history"]

WENT_ON = ("Not run: the user sent a new message instead of deciding on this call, so {name!r} "
           "was not run. Ask again if it is still needed.")
"""The result of a waiting call when new input arrives instead of a decision."""

DISMISSED = ("Not run: the user dismissed this call without running it, so {name!r} was not run. "
             "Do not call it again unless the user asks.")
"""The result of a waiting call whose pause the person dismissed (ignore, Mark as Resolved)."""


def answer_as_not_run(
    call: RequestedCall, template: str, ledger: Ledger | None, state: LoopState, thread_id: str,
    message_id: str | None = None,
) -> ToolMessage:
    """The tool message for a call that was never let run; audited as `abandoned`.

    A call the ledger shows as claimed (a crash mid-run before the new input) is not called
    "not run": the model reads what is known of it instead.
    """
    text = template.format(name=call.name)
    if ledger is not None:
        earlier = ledger.tool_call(thread_id, call.id)
        if earlier is not None and earlier["status"] not in ("refused", "rejected", "abandoned"):
            text = ledger.result(thread_id, call.id) or not_rerun_message(earlier)
        else:
            job = ToolJob(id=call.id, name=call.name, args=call.args,
                          round=state.get("rounds", 0), model=state.get("answered_by", ""))
            ledger.record_call(call_entry(job, "abandoned", policy_of(state), thread_id))
    return ToolMessage(text, tool_call_id=call.id, name=call.name, status="error", id=message_id)


def settle_history(state: LoopState, ledger: Ledger | None) -> LoopUpdate:
    """Before a run (or round) goes on: every call answered, nothing left waiting.

    Each assistant message's calls must be answered by the tool messages right after it.
    A call that waits in `pending`, or that no tool message answers (new input came instead
    of a decision), is answered as not run; a tool message for a waiting call (a client's
    "Successfully handled tool call.") is replaced by that answer, and one that answers no
    call of the message before it is dropped. The history from the first message that needed
    this is rewritten in order. Returns the state update, empty when all was settled already.
    """
    messages = state["messages"]
    waiting = {p["id"] for p in state.get("pending", [])}
    thread_id = current_thread() if ledger is not None else ""
    settled: list[AnyMessage] = []
    first_change: int | None = None
    index = 0
    while index < len(messages):
        message = messages[index]
        settled.append(message)
        index += 1
        if not isinstance(message, AIMessage) or not message.tool_calls:
            continue
        block: list[ToolMessage] = []
        while index < len(messages) and isinstance(messages[index], ToolMessage):
            block.append(messages[index])  # pyright: ignore[reportArgumentType]  # a ToolMessage, checked above
            index += 1
        ids = {c["id"] for c in message.tool_calls}
        if len(block) == len(ids) and {m.tool_call_id for m in block} == ids and waiting.isdisjoint(ids):
            settled += block  # the usual case: answered, by graphloop
            continue
        answers = _answers(requested_calls(message), block, waiting, ledger, state, thread_id)
        changed = len(answers) != len(block) or any(a is not b for a, b in zip(answers, block, strict=False))
        if changed and first_change is None:
            first_change = len(settled)
        settled += answers
    if waiting:  # (rarely: only a run that starts while paused)
        _audit_vanished(state, {c["id"] or "" for m in settled if isinstance(m, AIMessage) for c in m.tool_calls},
                        ledger, thread_id)
    update: LoopUpdate = {}
    if first_change is not None:
        # re-adding a removed id appends it: the rewritten tail comes back in order
        removed = [RemoveMessage(id=m.id) for m in messages[first_change:] if m.id is not None]
        update["messages"] = [*removed, *settled[first_change:]]
    if waiting or first_change is not None:
        update["pending"] = []
        if ledger is not None:
            ledger.remove_from_inbox(thread_id)
    return update


def _audit_vanished(state: LoopState, calls: set[str], ledger: Ledger | None, thread_id: str) -> None:
    """A waiting call whose assistant message was replaced is gone from the history: audited
    as abandoned, so a resume of its pause from an earlier view is refused."""
    for gone in (p for p in state.get("pending", []) if p["id"] not in calls):
        answer_as_not_run(RequestedCall(id=gone["id"], name=gone["name"], args=gone["args"]), WENT_ON,
                          ledger, state, thread_id)


def _answers(calls: Sequence[RequestedCall], block: Sequence[ToolMessage], waiting: set[str],
             ledger: Ledger | None, state: LoopState, thread_id: str) -> list[ToolMessage]:
    """The tool messages that answer `calls`: those of `block` that may (in their order), the
    rest as not run. A message for a waiting call is replaced, keeping its place and id."""
    by_id = {c.id: c for c in calls}
    answers: list[ToolMessage] = []
    answered: set[str] = set()
    for reply in block:
        call = by_id.get(reply.tool_call_id)
        if call is None or call.id in answered:
            continue  # answers no call of the message before it (or answers one twice)
        answered.add(call.id)
        answers.append(reply if call.id not in waiting else
                       answer_as_not_run(call, WENT_ON, ledger, state, thread_id, reply.id))
    return answers + [answer_as_not_run(c, WENT_ON, ledger, state, thread_id)
                      for c in calls if c.id not in answered]


def dismiss_pause(state: LoopState, ledger: Ledger | None, thread_id: str) -> LoopUpdate:
    """The person dismissed the pause: every unanswered call of the turn is answered as not
    run, nothing waits, and the run ends (`dismissed`)."""
    answers = [answer_as_not_run(call, DISMISSED, ledger, state, thread_id)
               for call in unanswered_calls(state["messages"])]
    if ledger is not None:
        ledger.remove_from_inbox(thread_id)
    return {"messages": answers, "pending": [], "dismissed": True}
