"""The request as servers take it: the original loop's wire rules, and what a server refused.

OpenAI-compatible servers differ (see "Real servers" in docs/behaviour.md); these rules work
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
line; so does a model that streams nothing (or an empty reply) when tools are offered: it is
asked without streaming from then on. And a model that answers tools and a system message by
naming a tool as text, `functions.<tool>:` (llama-cpp-python's `chatml-function-calling`
format), gets no system message again: its text leads the first user message, then a blank
line. `host_type="llamacpp"` starts in that form.

Example:
    >>> from graphloop.nodes.context import ModelConfig
    >>> payload = {"messages": [{"role": "system", "content": ""},
    ...                         {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}]}
    >>> shaped(payload, ModelConfig("m", "http://h/v1", "m"))["messages"]
    [{'role': 'assistant', 'content': '', 'tool_calls': [{'id': 'c1'}]}]
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from graphloop.checkpointers import SURROGATES
from graphloop.nodes.models import ModelConfig
from graphloop.nodes.replies import readable

__all__ = ["Learned", "Lesson", "forget", "learn", "learned", "lesson_from", "names_a_tool", "sends_system",
           "shaped"]

logger = logging.getLogger(__name__)

Lesson = Literal["omit_content", "no_tool_choice", "no_tool_choice_none", "no_stream_with_tools", "system_in_user"]

_WHY: dict[Lesson, str] = {
    "omit_content": "refused an empty content on a tool-calling assistant message; leaving the key out",
    "no_tool_choice": "refused tool_choice; sending tools without it",
    "no_tool_choice_none": "refused tool_choice \"none\"; asking the question and the final answer without tools",
    "no_stream_with_tools": "streamed nothing with tools offered; asking it without streaming",
    "system_in_user": "named a tool as text ('functions.<tool>:') when sent tools and a system message; "
                      "putting the system text into the first user message",
}

_CONTENT_REFUSED = re.compile(
    r"messages\[\d+\]\.content|attribute 'content'|'content'|"
    r"\bcontent\b.{0,40}\b(?:valid string|required|null|none|empty|missing)\b", re.IGNORECASE)
"""How servers word a refusal of an assistant message's content (llama-cpp-python's pydantic
error, LiteLLM's template error, others'); "content safety policy" is not one."""
_CHOICE_REFUSED = re.compile(r"tool[_ ]choice", re.IGNORECASE)
_NOT_ABOUT_THE_BODY = {401, 403, 404, 408, 409, 413, 429}
_SYSTEM_ROLES = ("system", "developer")


@dataclass
class Learned:
    """What one model's server was found to refuse, in this process."""

    omit_content: bool = False
    no_tool_choice: bool = False
    no_tool_choice_none: bool = False
    no_stream_with_tools: bool = False
    system_in_user: bool = False


_learned: dict[tuple[str, str], Learned] = {}
_lock = threading.Lock()


def learned(model: ModelConfig) -> Learned:
    """What `model`'s server was found to refuse so far (nothing, at first): a copy."""
    with _lock:
        return replace(_learned.setdefault((model.base_url, model.model_name), Learned()))


def forget() -> None:
    """Forget what every server was found to refuse (after a server was reconfigured; tests)."""
    with _lock:
        _learned.clear()


def learn(model: ModelConfig, lesson: Lesson) -> bool:
    """Remember `lesson` for `model`; True (and one log line) the first time."""
    with _lock:
        state = _learned.setdefault((model.base_url, model.model_name), Learned())
        if getattr(state, lesson):
            return False
        setattr(state, lesson, True)
    logger.warning("model %r (%s) %s, for the rest of this process", model.label, model.model_name, _WHY[lesson])
    return True


def lesson_from(status: int, message: str, *, sent_empty_content: bool, choice: str | None) -> Lesson | None:
    """Which rule a server's refusal names, if it names one of what the request carried.

    Not a refusal of the body's form: a key, a missing model, a rate limit, a request too
    long (callers check for a context-length error first). The content of an assistant
    message is named more precisely than `tool_choice`, so it is looked for first.
    """
    if status in _NOT_ABOUT_THE_BODY:
        return None
    if sent_empty_content and _CONTENT_REFUSED.search(message):
        return "omit_content"
    if choice is not None and _CHOICE_REFUSED.search(message):
        return "no_tool_choice_none" if choice == "none" else "no_tool_choice"
    return None


def sends_system(model: ModelConfig, state: Learned) -> bool:
    """Whether `model`'s requests carry a system message (else its text leads the first user
    message): not for `host_type="llamacpp"`, nor once the model named a tool instead of calling it."""
    return not (state.system_in_user or model.host_type == "llamacpp")


def names_a_tool(text: str, tool_names: Iterable[str]) -> bool:
    """Whether `text` is only `functions.<one of tool_names>:`, llama-cpp-python's answer to
    tools and a system message in its `chatml-function-calling` format.

    Example:
        >>> names_a_tool(" functions.add: ", ["add"]), names_a_tool("functions.rm:", ["add"])
        (True, False)
    """
    names = "|".join(re.escape(name) for name in tool_names)
    return bool(names) and re.fullmatch(rf"\s*functions\.(?:{names})\s*:\s*", text) is not None


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or its text parts."""
    if isinstance(content, str):
        return content
    parts = cast(list[Any], content or [])
    return "".join(p if isinstance(p, str) else str(cast(dict[str, Any], p).get("text") or "") for p in parts)


def _system_in_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` without system messages, their text leading the first user message and a
    blank line (a user message of its own if there is none)."""
    system = "\n\n".join(_text_of(m.get("content")) for m in messages if m.get("role") in _SYSTEM_ROLES)
    rest = [m for m in messages if m.get("role") not in _SYSTEM_ROLES]
    if not system:
        return rest
    for i, message in enumerate(rest):
        if message.get("role") == "user":
            content = message.get("content")
            led = f"{system}\n\n{content}" if isinstance(content, str) else [
                {"type": "text", "text": f"{system}\n\n"}, *cast(list[Any], content or [])]
            rest[i] = {**message, "content": led}
            return rest
    return [{"role": "user", "content": system}, *rest]


def _valid_text(value: Any) -> Any:
    """`value` with each lone surrogate as a `\\uXXXX` escape: one (a file name `os.listdir`
    could not decode, in a task or a call's arguments) would fail the whole request's UTF-8
    encoding. In JSON arguments text, the escape means that character. Everything else, NUL
    included, goes as it is: JSON carries it."""
    if isinstance(value, str):
        return readable(value, SURROGATES)
    if isinstance(value, dict):
        return {k: _valid_text(v) for k, v in cast(dict[str, Any], value).items()}
    if isinstance(value, list):
        return [_valid_text(v) for v in cast(list[Any], value)]
    return value


def _valid_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` through `_valid_text`, walked only when their text holds a lone surrogate
    (one scan in C of the JSON text instead of a Python walk of the whole history per request)."""
    try:
        clean = SURROGATES.search(json.dumps(messages, ensure_ascii=False)) is None
    except (TypeError, ValueError):  # not JSON as it is: walked, as before
        clean = False
    return messages if clean else [_valid_text(m) for m in messages]


def shaped(payload: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
    """`payload` (langchain-openai's request body) under the rules above."""
    state = learned(model)
    messages: list[dict[str, Any]] = []
    for given in cast(list[dict[str, Any]], payload.get("messages") or []):
        if given.get("role") in _SYSTEM_ROLES and not str(given.get("content") or "").strip():
            continue  # no system text, no system message
        if given.get("role") != "assistant" or not given.get("tool_calls"):
            messages.append(given)  # as built: only a tool-calling message changes
            continue
        message = {**given, "content": given.get("content") or ""}
        if state.omit_content and not message["content"]:
            del message["content"]
        messages.append(message)
    if not sends_system(model, state):
        messages = _system_in_user(messages)
    messages = _valid_messages(messages)
    shaped_payload = {**payload, "messages": messages} if "messages" in payload else dict(payload)
    if state.no_tool_choice_none and shaped_payload.get("tool_choice") == "none":
        shaped_payload.pop("tool_choice")
        shaped_payload.pop("tools", None)  # listed without "none", tools would invite calls
    elif state.no_tool_choice:
        shaped_payload.pop("tool_choice", None)
    if model.max_output_tokens is not None:
        shaped_payload.pop("max_completion_tokens", None)
        shaped_payload["max_tokens"] = model.max_output_tokens
    return shaped_payload
