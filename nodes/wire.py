"""The request as servers take it: the original loop's wire rules, and what a server refused.

OpenAI-compatible servers differ (see the README's "Tested against" table); these rules work
on every one of them:

- `tool_choice: "auto"` whenever tools are offered (llama-cpp-python ignores tools without
  it); `"none"` for the confirmation question and the final answer, the tools still listed,
  so the request's prefix stays the one providers' prompt caches keyed on the round before.
- An assistant message that only calls tools carries `"content": ""`: `null` is an HTTP 500
  on llama-cpp-python and Open WebUI, a missing key fails LiteLLM's backend.
- No system message when there is no system text.
- `max_output_tokens` goes as `max_tokens`, which every server reads.

A server that refuses one of them by name (an HTTP 4xx/5xx whose message names `content` or
`tool_choice`) gets the other form, for that model and the life of the process, with one log
line; so does a model that streams nothing when tools are offered (it is asked without
streaming from then on).

Example:
    >>> from graphloop.nodes.config import ModelConfig
    >>> payload = {"messages": [{"role": "system", "content": ""},
    ...                         {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}]}
    >>> shaped(payload, ModelConfig("m", "http://h/v1", "m"))["messages"]
    [{'role': 'assistant', 'content': '', 'tool_calls': [{'id': 'c1'}]}]
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Literal, cast

from graphloop.nodes.config import ModelConfig

__all__ = ["Learned", "Lesson", "forget", "learn", "learned", "lesson_from", "shaped"]

logger = logging.getLogger(__name__)

Lesson = Literal["omit_content", "no_tool_choice", "no_stream_with_tools"]

_WHY: dict[Lesson, str] = {
    "omit_content": "refused an empty content on a tool-calling assistant message; leaving the key out",
    "no_tool_choice": "refused tool_choice; sending tools without it",
    "no_stream_with_tools": "streamed nothing with tools offered; asking it without streaming",
}


@dataclass
class Learned:
    """What one model's server was found to refuse, in this process."""

    omit_content: bool = False
    no_tool_choice: bool = False
    no_stream_with_tools: bool = False


_learned: dict[tuple[str, str], Learned] = {}
_lock = threading.Lock()


def learned(model: ModelConfig) -> Learned:
    """What `model`'s server was found to refuse so far (nothing, at first)."""
    with _lock:
        return _learned.setdefault((model.base_url, model.model_name), Learned())


def forget() -> None:
    """Forget what every server was found to refuse (after a server was reconfigured; tests)."""
    with _lock:
        _learned.clear()


def learn(model: ModelConfig, lesson: Lesson) -> bool:
    """Remember `lesson` for `model`; True (and one log line) the first time."""
    state = learned(model)
    with _lock:
        if getattr(state, lesson):
            return False
        setattr(state, lesson, True)
    logger.warning("model %r (%s) %s, for the rest of this process", model.label, model.model_name, _WHY[lesson])
    return True


def lesson_from(message: str, payload_had_tool_choice: bool) -> Lesson | None:
    """Which rule a server's refusal names, if any: `tool_choice` before `content`."""
    text = message.lower()
    if payload_had_tool_choice and "tool_choice" in text:
        return "no_tool_choice"
    if "content" in text:
        return "omit_content"
    return None


def shaped(payload: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
    """`payload` (langchain-openai's request body) under the rules above."""
    state = learned(model)
    messages: list[dict[str, Any]] = []
    for given in cast(list[dict[str, Any]], payload.get("messages") or []):
        if given.get("role") == "system" and not given.get("content"):
            continue  # no system text, no system message
        message = dict(given)
        if message.get("role") == "assistant" and message.get("tool_calls"):
            message["content"] = message.get("content") or ""
            if state.omit_content and not message["content"]:
                del message["content"]
        messages.append(message)
    shaped_payload = {**payload, "messages": messages} if "messages" in payload else dict(payload)
    if state.no_tool_choice:
        shaped_payload.pop("tool_choice", None)
    if model.max_output_tokens is not None:
        shaped_payload.pop("max_completion_tokens", None)
        shaped_payload["max_tokens"] = model.max_output_tokens
    return shaped_payload
