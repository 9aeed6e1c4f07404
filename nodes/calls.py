"""Tool calls as the loop sees them: repaired, parsed or broken, answered or not.

`normalize_reply` makes a model's reply safe to keep and to send back: every call gets a
unique id, a name with stray characters is matched to a real tool when that is unambiguous,
and broken arguments are replaced by a valid object carrying the raw text
(`{"unparsed_arguments": "..."}`), so no later request replays invalid JSON (vLLM rejects that).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    InvalidToolCall,
    ToolCall,
    ToolMessage,
)

__all__ = [
    "CALL_ORDER",
    "CUT_OFF",
    "STREAMED",
    "UNPARSED",
    "RequestedCall",
    "arguments_error",
    "is_answer",
    "last_turn",
    "match_tool_name",
    "normalize_reply",
    "requested_calls",
    "this_run",
    "unanswered_calls",
    "whole_calls",
]

CALL_ORDER = "tool_call_ids"
"""`response_metadata` key: the reply's tool call ids in the order the server sent them."""

UNPARSED = "unparsed_arguments"
"""The key under which broken arguments are kept, as text, in the repaired call."""

STREAMED = "graphloop_stream"
"""`response_metadata` key of a streamed reply: each call's argument text as streamed, and the
finish reason (see `graphloop.nodes.repairs`)."""

CUT_OFF = "graphloop_cut_off"
"""`response_metadata` key: why the reply's tool calls may be incomplete; none of them runs."""

_CUT_REASONS = {"length", "max_tokens", "content_filter", "error"}
"""Finish reasons that end a reply before the model did: its calls may be cut short."""

_JSON_KINDS: dict[type, str] = {list: "an array", str: "a string", int: "a number",
                                float: "a number", bool: "a boolean", type(None): "null"}
_STRAY = re.compile(r"<[^>]*>|[\"'`\s]")


@dataclass(frozen=True)
class RequestedCall:
    """One tool call from the model. `error` is set when its arguments could not be used."""

    id: str
    name: str
    args: dict[str, object]
    error: str | None = None
    raw_args: str | None = None


def arguments_error(raw: str) -> str | None:
    """Why `raw` is not usable as tool arguments (a JSON object), or None if it is."""
    try:
        value: object = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        return f"the arguments are not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if not isinstance(value, dict):
        return f"the arguments must be a JSON object, got {_JSON_KINDS.get(type(value), 'a value')}"
    return None


def _unparsed(args: dict[str, object]) -> str | None:
    raw = args.get(UNPARSED)
    return raw if len(args) == 1 and isinstance(raw, str) else None


def requested_calls(message: AIMessage) -> list[RequestedCall]:
    """Every call in `message`, with the reason its arguments are unusable where they are."""
    calls: list[RequestedCall] = []
    cut: str | None = message.response_metadata.get(CUT_OFF)
    for call in message.tool_calls:
        args = dict(call["args"])
        raw = _unparsed(args)
        error = cut or (arguments_error(raw) if raw is not None else None)
        calls.append(RequestedCall(id=call["id"] or "", name=call["name"], args={} if error else args,
                                   error=error, raw_args=raw))
    for bad in message.invalid_tool_calls:  # replies not (yet) normalised
        calls.append(RequestedCall(id=bad["id"] or "", name=bad["name"] or "", args={},
                                   error=cut or arguments_error(bad["args"] or "") or bad["error"],
                                   raw_args=bad["args"]))
    return calls


def _cut_short(reply: AIMessage) -> str | None:
    """Why `reply` ended before the model finished it, or None when it finished normally.

    Every finish reason a stream sent counts (langchain-core glues repeated ones together:
    `"lengthlength"`); a stream that sent none was cut (`graphloop.nodes.chat` asks again
    without streaming before this is reached); a whole JSON body without one is finished.
    """
    record: dict[str, Any] = reply.response_metadata.get(STREAMED) or {}
    reasons: list[str] = list(record.get("finish_reasons") or [])
    if not reasons and STREAMED in reply.response_metadata:
        return "the reply was cut off: the stream ended before the model finished it"
    if not reasons and reply.response_metadata.get("finish_reason") is not None:
        reasons = [str(reply.response_metadata["finish_reason"])]
    for reason in reasons:
        if any(cut in reason.lower() for cut in _CUT_REASONS):  # "lengthlength" too
            return f"the reply was cut off (finish_reason {reason!r}) before the call was complete"
    return None


def whole_calls(reply: AIMessage) -> AIMessage:
    """`reply`, with every call that may be incomplete made an invalid call that does not run.

    A call is whole only when the reply finished normally and, if streamed, its argument text
    as streamed parses strictly: langchain-core's partial-JSON repair of a cut stream would
    otherwise run `'{"amount": 10'` as `{"amount": 10}`. When the reply was cut, none of its
    calls runs (`CUT_OFF`): a call that parses may still be missing arguments.

    Example:
        >>> cut = AIMessage("", tool_calls=[{"name": "pay", "args": {"amount": 10}, "id": "c1"}],
        ...                 response_metadata={"finish_reason": "length"})
        >>> whole_calls(cut).invalid_tool_calls[0]["args"]
        '{"amount": 10}'
    """
    cut = _cut_short(reply) if reply.tool_calls else None
    if cut is None and STREAMED not in reply.response_metadata:
        return reply  # a whole JSON body: langchain-openai parsed its calls' text strictly already
    record: dict[str, Any] = reply.response_metadata.get(STREAMED) or {}
    streamed: list[dict[str, str]] = record.get("calls", [])
    in_order = [c["arguments"] for c in streamed]
    by_id = {c["id"]: c["arguments"] for c in streamed if c.get("id")}
    kept: list[ToolCall] = []
    broken: list[InvalidToolCall] = []
    for position, call in enumerate(reply.tool_calls):
        raw = by_id.get(call["id"] or "")
        if raw is None:  # not streamed, or streamed without ids: as parsed, or in stream order
            whole = len(in_order) == len(reply.tool_calls)
            raw = in_order[position] if whole else json.dumps(call["args"])
        error = cut or arguments_error(raw)
        if error is None:
            kept.append(call)
        else:
            broken.append(InvalidToolCall(type="invalid_tool_call", id=call["id"], name=call["name"],
                                          args=raw, error=error))
    if not broken:
        return reply
    metadata = {**reply.response_metadata, CUT_OFF: cut} if cut else reply.response_metadata
    return reply.model_copy(update={"tool_calls": kept, "response_metadata": metadata,
                                    "invalid_tool_calls": [*broken, *reply.invalid_tool_calls]})


def match_tool_name(name: str, known: Collection[str]) -> str:
    """`name`, or the one known tool it means once quotes, tags and spaces are taken out.

    Example:
        >>> match_tool_name('"get_weather"', ["get_weather", "send_email"])
        'get_weather'
        >>> match_tool_name("<tool>Send_Email</tool>", ["get_weather", "send_email"])
        'send_email'
    """
    if name in known:
        return name
    cleaned = _STRAY.sub("", name)
    exact = [k for k in known if k == cleaned]
    matches = exact or [k for k in known if k.lower() == cleaned.lower()]
    return matches[0] if len(matches) == 1 else name  # none or ambiguous: unknown-tool message


def normalize_reply(reply: AIMessage, history: Sequence[AnyMessage], known: Collection[str]) -> AIMessage:
    """`reply` with unique stable call ids, matched tool names and broken arguments repaired."""
    if not reply.tool_calls and not reply.invalid_tool_calls:
        return reply
    taken = {c["id"] for m in history if isinstance(m, AIMessage) for c in m.tool_calls}
    calls: list[ToolCall] = []
    raw_calls = [(c["id"], c["name"], dict(c["args"])) for c in reply.tool_calls]
    raw_calls += [(b["id"], b["name"] or "", {UNPARSED: b["args"] or ""})
                  for b in reply.invalid_tool_calls]
    # LangChain lists broken calls after the good ones; restore the order the model used
    order: list[str] = reply.response_metadata.get(CALL_ORDER) or []
    position = {call_id: i for i, call_id in enumerate(order)}
    raw_calls.sort(key=lambda c: position.get(c[0] or "", len(position)))
    for index, (call_id, name, args) in enumerate(raw_calls):
        if not call_id or call_id in taken:
            call_id = f"{reply.id}-call-{index}"  # stable: the reply id is unique in the thread
        taken.add(call_id)
        calls.append(ToolCall(name=match_tool_name(name, known), args=args, id=call_id,
                              type="tool_call"))
    return reply.model_copy(update={"tool_calls": calls, "invalid_tool_calls": []})


def is_answer(message: AnyMessage | None) -> bool:
    """Whether `message` ends a run: an assistant message that calls no tool."""
    return isinstance(message, AIMessage) and not message.tool_calls and not message.invalid_tool_calls


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
