"""Calling one model: `ChatOpenAI` pointed at any OpenAI-compatible endpoint.

Failures become `ModelCallError` naming the model's label and URL, never its key.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import openai
from langchain_core.messages import AIMessage, BaseMessage, InvalidToolCall
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from graphloop.checkpointers.errors import ContextOverflowError, ModelCallError
from graphloop.nodes.config import ModelConfig

__all__ = ["call_chat_model", "chat_model", "with_unique_id"]

_OVERFLOW = re.compile(
    r"context[_ ]length[_ ]exceeded|maximum context length|context (?:length|window)|"
    r"too many tokens|prompt is too long|input is too long|reduce the length",
    re.IGNORECASE,
)
"""How OpenAI, vLLM, llama.cpp, LiteLLM and others word "the request is too long"."""

_JSON_TYPE_NAMES: dict[type, str] = {
    list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
    type(None): "null",
}


def _split_non_object_calls(response: dict[str, Any]) -> list[InvalidToolCall]:
    """Take out tool calls whose arguments are valid JSON but not an object.

    langchain-openai parses those into `tool_calls` and then fails to build the message at
    all; we keep them as invalid calls so the model can be told what was wrong.
    """
    moved: list[InvalidToolCall] = []
    choices: list[dict[str, Any]] = response.get("choices") or []
    for choice in choices:
        message: dict[str, Any] = choice.get("message") or {}
        calls: list[dict[str, Any]] = message.get("tool_calls") or []
        kept: list[dict[str, Any]] = []
        moved_before = len(moved)
        for call in calls:
            function: dict[str, Any] = call.get("function") or {}
            raw: str = function.get("arguments") or ""
            try:
                value: object = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                value = {}  # langchain reports broken JSON itself
            if isinstance(value, dict):
                kept.append(call)
                continue
            kind = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
            moved.append(InvalidToolCall(
                type="invalid_tool_call", id=call.get("id"), name=function.get("name"),
                args=raw, error=f"the arguments must be a JSON object, got {kind}"))
        if len(moved) > moved_before:
            message["tool_calls"] = kept or None
    return moved


class _ChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` that survives tool calls with non-object arguments."""

    def _create_chat_result(
        self, response: dict[str, Any] | openai.BaseModel, generation_info: dict[str, Any] | None = None
    ) -> ChatResult:
        data = response if isinstance(response, dict) else response.model_dump(warnings=False)
        moved = _split_non_object_calls(data)
        result = super()._create_chat_result(data, generation_info)  # pyright: ignore[reportUnknownMemberType]  # untyped dict in langchain-openai's signature
        message = result.generations[0].message if result.generations else None
        if moved and isinstance(message, AIMessage):
            message.invalid_tool_calls.extend(moved)
        return result


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ModelConfig, ChatOpenAI]] = (
    weakref.WeakKeyDictionary()
)


def chat_model(model: ModelConfig) -> ChatOpenAI:
    """The LangChain chat model for `model`, cached per event loop.

    Each loop gets its own HTTP client: an async client used from another loop fails.
    """
    models = _per_loop.setdefault(asyncio.get_running_loop(), {})
    if model not in models:
        models[model] = _ChatOpenAI(
            model=model.model_name,
            base_url=model.base_url,
            api_key=SecretStr(model.api_key or "none"),
            timeout=model.timeout,
            max_retries=model.max_retries,
            http_async_client=openai.DefaultAsyncHttpxClient(timeout=model.timeout),
        )
    return models[model]


def _redact(text: str, model: ModelConfig) -> str:
    return text.replace(model.api_key, "***") if model.api_key else text


async def call_chat_model(
    model: ModelConfig,
    messages: Sequence[BaseMessage],
    tools: Sequence[dict[str, Any]] = (),
) -> AIMessage:
    """Send `messages` (and `tools`, if any) to `model`; return its reply.

    Tool calls are taken from the reply whatever its `finish_reason` says.
    """
    llm = chat_model(model)
    runnable = llm.bind_tools(list(tools)) if tools else llm  # pyright: ignore[reportUnknownMemberType]  # bind_tools' union is partly untyped
    where = f"model {model.label!r} ({model.model_name} at {model.base_url})"
    try:
        reply = await runnable.ainvoke(list(messages))
    except openai.APIStatusError as exc:
        text = _redact(f"{where} answered HTTP {exc.status_code}: {exc.message}", model)
        if exc.status_code in (400, 413) and _OVERFLOW.search(f"{exc.message} {exc.code or ''}"):
            raise ContextOverflowError(text) from exc
        raise ModelCallError(text) from exc
    except openai.APIConnectionError as exc:
        raise ModelCallError(_redact(
            f"{where} could not be reached: {exc}; check api_url and that the server is up",
            model)) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelCallError(_redact(
            f"{where} sent a reply that is not a chat completion: {exc}", model)) from exc
    return reply


def with_unique_id(reply: AIMessage, history: Sequence[BaseMessage]) -> AIMessage:
    """`reply`, re-identified if its id is missing or already in `history`.

    Some servers reuse completion ids; the add-messages reducer would then overwrite an
    earlier reply. A unique server id is kept, so streamed tokens and the final message match.
    """
    if reply.id and all(m.id != reply.id for m in history):
        return reply
    return reply.model_copy(update={"id": f"ai-{uuid4().hex}"})