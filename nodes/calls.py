"""Tool calls as the loop sees them: parsed or broken, answered or not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

__all__ = ["RequestedCall", "last_turn", "requested_calls", "this_run", "unanswered_calls"]


@dataclass(frozen=True)
class RequestedCall:
    """One tool call from the model. `error` is set when its arguments could not be used."""

    id: str
    name: str
    args: dict[str, object]
    error: str | None = None
    raw_args: str | None = None


def requested_calls(message: AIMessage) -> list[RequestedCall]:
    """Every call in `message`: the parsed ones, then those whose arguments were broken."""
    calls = [RequestedCall(id=c["id"] or "", name=c["name"], args=dict(c["args"]))
             for c in message.tool_calls]
    for bad in message.invalid_tool_calls:
        calls.append(
            RequestedCall(
                id=bad["id"] or "",
                name=bad["name"] or "",
                args={},
                error=bad["error"] or "the arguments are not valid JSON",
                raw_args=bad["args"],
            )
        )
    return calls


def last_turn(messages: Sequence[AnyMessage]) -> tuple[AIMessage | None, list[ToolMessage]]:
    """The latest assistant message and the tool messages that follow it."""
    replies: list[ToolMessage] = []
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            replies.append(message)
        elif isinstance(message, AIMessage):
            return message, replies[::-1]
        else:
            break
    return None, []


def unanswered_calls(messages: Sequence[AnyMessage]) -> list[RequestedCall]:
    """Calls of the latest assistant message that no tool message answers yet."""
    ai, replies = last_turn(messages)
    if ai is None:
        return []
    answered = {r.tool_call_id for r in replies}
    return [c for c in requested_calls(ai) if c.id not in answered]


def this_run(messages: Sequence[AnyMessage]) -> Sequence[AnyMessage]:
    """The messages after the latest user message: the current task's turns."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return messages[index + 1:]
    return messages
