"""Tool calls a model wrote as text, read back as real calls.

Small local models served without a tool-call template (llama.cpp, Ollama) often answer a
tool round with the call written in their text instead of a `tool_calls` entry:
`{"name": "get_weather", "arguments": {"city": "Paris"}}`, bare, in a ```json fence or in
`<tool_call>` tags (Qwen/Hermes). `calls_from_text` turns a reply whose whole text is one such
call (or a JSON list of them) naming a known tool into that call.

It is off by default and meant only for models known to write calls this way: with it on, an
answer that merely happens to be a JSON object naming a tool (a user asked for an example
call, say) would be run as a call. Parsing is strict for the same reason: `json.loads` only,
no repair, no fuzzy tool names; anything else stays text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any, cast

from langchain_core.messages import AIMessage, ToolCall

__all__ = ["TEXT_CALLS", "calls_from_text"]

TEXT_CALLS = "text_tool_calls"
"""`response_metadata` key, set to True on a reply whose calls were read from its text."""

_WRAPPERS = (re.compile(r"```(?:json)?(.*)```", re.DOTALL | re.IGNORECASE),
             re.compile(r"<tool_call>(.*)</tool_call>", re.DOTALL))
_ARGUMENT_KEYS = ("arguments", "parameters")
_IGNORED_KEYS = frozenset({"id", "type"})  # some models copy these from the OpenAI wire format


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity could not be sent back to a server


def _loads(text: str) -> object:
    """`text` as JSON, or None if it is not strictly valid JSON."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None


def _arguments(value: object) -> dict[str, Any] | None:
    """`value` as tool arguments: a JSON object, or a string holding one (OpenAI style)."""
    if isinstance(value, str):
        value = _loads(value)
    return cast("dict[str, Any]", value) if isinstance(value, dict) else None


def _call(value: object, known: Collection[str]) -> tuple[str, dict[str, Any]] | None:
    """`(name, arguments)` if `value` is exactly one call object naming a known tool."""
    if not isinstance(value, dict):
        return None
    call = cast("dict[str, object]", value)  # JSON object keys are strings
    keys = set(call)
    argument_keys = [key for key in _ARGUMENT_KEYS if key in keys]
    if len(argument_keys) != 1 or keys - _IGNORED_KEYS != {"name", *argument_keys}:
        return None
    name, arguments = call["name"], _arguments(call[argument_keys[0]])
    if not isinstance(name, str) or name not in known or arguments is None:
        return None
    return name, arguments


def _calls(text: str, known: Collection[str]) -> list[tuple[str, dict[str, Any]]] | None:
    """The calls `text` consists of, or None unless all of it is call JSON."""
    for wrapper in _WRAPPERS:
        if wrapped := wrapper.fullmatch(text):
            text = wrapped.group(1)
            break
    value = _loads(text)
    items = cast("list[object]", value) if isinstance(value, list) else [value]
    calls = [_call(item, known) for item in items]
    valid = [call for call in calls if call is not None]
    return valid if valid and len(valid) == len(calls) else None


def calls_from_text(reply: AIMessage, known: Collection[str]) -> AIMessage:
    """`reply` with the tool calls its text consists of, or `reply` itself if it is not one.

    Only a reply without calls whose whole text (whitespace stripped) is one call object
    `{"name": ..., "arguments": {...}}` ("parameters" is accepted too, and arguments given as
    a string holding an object; "id" and "type" keys are ignored) or a list of them, bare, in
    a ```json fence or in `<tool_call>` tags, each naming one of `known`, is changed: its
    calls get the stable ids `<reply id>-text-<index>` ("text" stands in for a missing reply
    id), its content becomes "" and `response_metadata[TEXT_CALLS]` is True.

    Example:
        >>> reply = AIMessage(content='{"name": "get_weather", "arguments": {"city": "Paris"}}', id="r1")
        >>> calls_from_text(reply, ["get_weather"]).tool_calls
        [{'name': 'get_weather', 'args': {'city': 'Paris'}, 'id': 'r1-text-0', 'type': 'tool_call'}]
        >>> calls_from_text(AIMessage(content="Sunny in Paris."), ["get_weather"]).content
        'Sunny in Paris.'
    """
    if reply.tool_calls or reply.invalid_tool_calls or not isinstance(reply.content, str):
        return reply
    calls = _calls(reply.content.strip(), known)
    if calls is None:
        return reply
    prefix = reply.id or "text"
    tool_calls = [ToolCall(name=name, args=args, id=f"{prefix}-text-{index}", type="tool_call")
                  for index, (name, args) in enumerate(calls)]
    metadata = {**reply.response_metadata, TEXT_CALLS: True}
    return reply.model_copy(update={"content": "", "tool_calls": tool_calls, "response_metadata": metadata})
