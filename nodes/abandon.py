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
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, RemoveMessage, ToolMessage

from graphloop.checkpointers.ledger import Ledger
from graphloop.nodes.audit import call_entry, current_thread, not_rerun_message
from graphloop.nodes.calls import RequestedCall, requested_calls, unanswered_calls
from graphloop.nodes.state import LoopState, ToolJob, policy_of

__all__ = ["DISMISSED", "WENT_ON", "abandon_paused_turn", "answer_as_not_run", "dismiss_pause"]

WENT_ON = ("Not run: the user sent a new message instead of deciding on this call, so {name!r} "
           "was not run. Ask again if it is still needed.")
"""The result of a waiting call when new input arrives instead of a decision."""

DISMISSED = ("Not run: the user dismissed this call without running it, so {name!r} was not run. "
             "Do not call it again unless the user asks.")
"""The result of a waiting call whose pause the person dismissed (ignore, Mark as Resolved)."""

def _last_ai(messages: Sequence[AnyMessage]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], AIMessage):
            return index
    return None


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


def abandon_paused_turn(state: LoopState, ledger: Ledger | None) -> dict[str, Any]:
    """When new input follows a paused turn: answer its waiting and unanswered calls as not run.

    The answers go right after the assistant message (before the new input, as the protocol
    wants); a client's tool message for a waiting call is replaced in place. Returns the
    state update, empty when there is nothing to settle.
    """
    messages = state["messages"]
    index = _last_ai(messages)
    if index is None:
        return {}
    after = messages[index + 1:]
    waiting = {p["id"] for p in state.get("pending", [])}
    replies = {m.tool_call_id: m for m in after if isinstance(m, ToolMessage)}
    new_input = any(not isinstance(m, ToolMessage) for m in after)
    calls = requested_calls(messages[index])  # pyright: ignore[reportArgumentType]  # an AIMessage, found above
    settle = [c for c in calls if c.id in waiting and (c.id in replies or new_input)
              or (new_input and c.id not in replies)]
    if not settle:
        return {}
    ids = {c.id for c in settle}
    thread_id = current_thread() if ledger is not None else ""
    answers = [answer_as_not_run(c, WENT_ON, ledger, state, thread_id, _id_of(replies.get(c.id)))
               for c in settle]
    kept = [m for m in after if isinstance(m, ToolMessage) and m.tool_call_id not in ids
            and m.tool_call_id in {c.id for c in calls}]
    rest = [m for m in after if not isinstance(m, ToolMessage)]
    rewritten: list[AnyMessage | RemoveMessage] = [RemoveMessage(id=m.id) for m in after if m.id is not None]
    if ledger is not None:
        ledger.remove_from_inbox(thread_id)
    return {"messages": [*rewritten, *kept, *answers, *rest], "pending": []}


def dismiss_pause(state: LoopState, ledger: Ledger | None, thread_id: str) -> dict[str, Any]:
    """The person dismissed the pause: every unanswered call of the turn is answered as not
    run, nothing waits, and the run ends (`dismissed`)."""
    answers = [answer_as_not_run(call, DISMISSED, ledger, state, thread_id)
               for call in unanswered_calls(state["messages"])]
    if ledger is not None:
        ledger.remove_from_inbox(thread_id)
    return {"messages": answers, "pending": [], "dismissed": True}


def _id_of(message: ToolMessage | None) -> str | None:
    return message.id if message is not None else None
