"""Calling one model once: `ChatOpenAI` pointed at any OpenAI-compatible endpoint.

Failures become `ModelCallError` naming the model's label and URL (never its key), with the
HTTP status and `Retry-After` so the fallback chain can decide what to do next.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast
from uuid import uuid4

import httpx
import openai
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.constants import TAG_NOSTREAM
from pydantic import SecretStr

from graphloop.checkpointers import (
    ContextOverflowError,
    EmptyReplyError,
    ModelCallError,
    StreamCutError,
    redact,
)
from graphloop.nodes.calls import STREAMED
from graphloop.nodes.models import ModelConfig, ToolChoice
from graphloop.nodes.repairs import RepairedChatOpenAI
from graphloop.nodes.tokens import counter_for
from graphloop.nodes.usage import measured, requested
from graphloop.nodes.wire import Lesson, learn, learned, lesson_from, names_a_tool, sends_system, shaped

__all__ = ["call_chat_model", "chat_model", "with_unique_id"]

_OVERFLOW = re.compile(
    r"context[_ ]length[_ ]exceeded|maximum context length|context (?:length|window)|"
    r"too many tokens|prompt is too long|input is too long|reduce the length",
    re.IGNORECASE,
)
"""How OpenAI, vLLM, llama.cpp, LiteLLM and others word "the request is too long"."""

_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ModelConfig, ChatOpenAI]] = (
    weakref.WeakKeyDictionary()
)


def chat_model(model: ModelConfig) -> ChatOpenAI:
    """The LangChain chat model for `model`, cached per event loop.

    Each loop gets its own HTTP client: an async client used from another loop fails. The
    client does not retry; the fallback chain does, with backoff and `Retry-After`.
    """
    models = _per_loop.setdefault(asyncio.get_running_loop(), {})
    if model not in models:
        llm = RepairedChatOpenAI(
            model=model.model_name,
            base_url=model.base_url,
            api_key=SecretStr(model.api_key or "none"),
            timeout=model.timeout,
            max_retries=0,
            stream_usage=True,  # a stream's usage, in its last chunk (`stream_options.include_usage`)
            http_async_client=openai.DefaultAsyncHttpxClient(timeout=model.timeout),
            default_headers=dict(model.extra_headers) or None,
            extra_body=dict(model.extra_body) or None,
        )
        llm.shaped_by(functools.partial(shaped, model=model))
        models[model] = llm
    return models[model]


def _redact(text: str, model: ModelConfig) -> str:
    """`text` without the model's key or a header's value (a server may echo them in an
    error; of `Bearer <token>`, the token alone too), nor a URL secret."""
    values = model.extra_headers.values()
    return redact(text, secrets=(model.api_key, *values, *(v.partition(" ")[2] for v in values)))


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), if any."""
    value = exc.response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def call_chat_model(
    model: ModelConfig,
    messages: Sequence[BaseMessage],
    tools: Sequence[dict[str, Any]] = (),
    *,
    stream: bool = True,
    tool_choice: ToolChoice | None = None,
) -> AIMessage:
    """Send `messages` (and `tools`, if any) to `model` once; return its reply.

    Tool calls are taken from the reply whatever its `finish_reason` says. `tool_choice`
    overrides the model's own (the question and the final answer send "none"). With
    `stream=False` the reply is not streamed, and LangGraph's `messages` stream mode does not
    show its tokens (LangChain's `nostream` tag): for text shown elsewhere, like the question.
    A refusal that names one of the wire rules is answered by the other form, once, and so is
    a tool named as text because a system message was sent (see `graphloop.nodes.wire`).
    """
    choice = (tool_choice or model.tool_choice) if tools else None
    for attempt in range(2):
        llm = chat_model(model)
        runnable = llm.bind_tools(list(tools), tool_choice=choice) if tools else llm  # pyright: ignore[reportUnknownMemberType]  # bind_tools' union is partly untyped
        known = learned(model)  # the form this request goes in
        streams = stream and model.stream and not (choice != "none" and tools and known.no_stream_with_tools)
        count = functools.partial(counter_for(model.model_name).request, messages, tools)
        with requested(model, count) as call:  # checked, noted, timed, traced (`graphloop.nodes.usage`)
            try:
                if streams:  # when a caller shows tokens (LangGraph's messages mode)
                    reply = _finished(await runnable.ainvoke(list(messages)), model)
                else:
                    reply = await runnable.ainvoke(list(messages), {"tags": [TAG_NOSTREAM]}, stream=False)
                reply, call.input_tokens, call.output_tokens, call.counted = measured(reply, messages, tools,
                                                                                      model.model_name)
                call.outcome = "answered"
            except openai.APIStatusError as exc:
                lesson = _lesson_in(exc, messages, choice)
                if attempt == 0 and lesson is not None and not getattr(known, lesson):
                    learn(model, lesson)  # or another request learned it meanwhile: asked again either way
                    call.outcome = "retried"
                    continue
                error = _model_error(exc, model)
            except (openai.APIError, httpx.TransportError, ValueError, KeyError, TypeError, IndexError,
                    AttributeError) as exc:
                error = _model_error(exc, model)
            else:
                if attempt == 0 and choice != "none" and sends_system(model, known) and _named_a_tool(
                        reply, messages, tools):
                    learn(model, "system_in_user")  # this reply is dropped: asked again in the other form
                    call.outcome = "retried"
                    continue
                return reply
            call.error = type(error).__qualname__
        raise error  # raised out here: neither its cause nor its context holds the server's text
    raise AssertionError("the loop returns or raises")


def _lesson_in(exc: openai.APIStatusError, messages: Sequence[BaseMessage], choice: str | None) -> Lesson | None:
    """The wire rule a refusal names, if any (a context-length error names none)."""
    if _OVERFLOW.search(f"{exc.message} {exc.code or ''}"):
        return None
    return lesson_from(exc.status_code, str(exc.message), sent_empty_content=_calls_without_text(messages),
                       choice=choice)


def _named_a_tool(reply: AIMessage, messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> bool:
    """Whether a request with a system message got a tool named as text instead of a call
    (`functions.add:`, llama-cpp-python's `chatml-function-calling` format)."""
    if reply.tool_calls or reply.invalid_tool_calls:
        return False
    if not any(isinstance(m, SystemMessage) and m.text.strip() for m in messages):
        return False
    names = [str(cast(dict[str, Any], t.get("function") or {}).get("name") or "") for t in tools]
    return names_a_tool(reply.text, [n for n in names if n])


def _finished(reply: AIMessage, model: ModelConfig) -> AIMessage:
    """`reply`, unless it came from a stream that stopped before any finish reason (the
    connection closed mid-reply): half an answer, or a call cut mid-arguments, is not used;
    `StreamCutError` has the chain ask again without streaming."""
    record = reply.response_metadata.get(STREAMED)
    if isinstance(record, dict) and not cast(dict[str, Any], record).get("finish_reasons"):
        raise StreamCutError(f"{_where(model)}: the stream ended before the reply finished (no "
                             "finish_reason)", label=model.label)
    return reply


def _calls_without_text(messages: Sequence[BaseMessage]) -> bool:
    """Whether the request carried an assistant message that only calls tools (sent as "")."""
    return any(isinstance(m, AIMessage) and m.tool_calls and not m.text for m in messages)


def _where(model: ModelConfig) -> str:
    """The model as errors name it: its label, name and URL (never its key)."""
    return redact(f"model {model.label!r} ({model.model_name} at {model.base_url})")


def _model_error(exc: Exception, model: ModelConfig) -> ModelCallError:
    """What a failed request is for graphloop: the status, what was said, the key redacted."""
    where = _where(model)
    if isinstance(exc, openai.APIStatusError):
        text = _redact(f"{where} answered HTTP {exc.status_code}: {exc.message}", model)
        kind = ContextOverflowError if (
            exc.status_code in (400, 413) and _OVERFLOW.search(f"{exc.message} {exc.code or ''}")
        ) else ModelCallError
        return kind(text, label=model.label, status=exc.status_code, retry_after=_retry_after(exc))
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return ModelCallError(_redact(
            f"{where} could not be reached: {exc}; check api_url and that the server is up", model),
            label=model.label)
    if isinstance(exc, httpx.TransportError):  # raised while reading a stream, not wrapped by openai
        return ModelCallError(_redact(f"{where}: the connection failed during the reply: {exc!r}", model),
                              label=model.label)
    if isinstance(exc, json.JSONDecodeError):
        return ModelCallError(f"{where} sent a reply that is not a chat completion: the body is empty or "
                              "not JSON", label=model.label)
    if type(exc) is openai.APIError:  # an error event in the middle of a stream
        return ModelCallError(_redact(f"{where} reported an error during the reply: {exc.message}", model),
                              label=model.label)
    if isinstance(exc, ValueError) and "No generations found in stream" in str(exc):
        return EmptyReplyError(f"{where} streamed nothing", label=model.label, nothing_streamed=True)
    return ModelCallError(_redact(f"{where} sent a reply that is not a chat completion: {exc}", model),
                          label=model.label)  # the client's parse of junk (or another API error)


def with_unique_id(reply: AIMessage, history: Sequence[BaseMessage]) -> AIMessage:
    """`reply`, re-identified if its id is missing or already in `history`.

    Some servers reuse completion ids; the add-messages reducer would then overwrite an
    earlier reply. A unique server id is kept, so streamed tokens and the final message match.
    """
    if reply.id and all(m.id != reply.id for m in history):
        return reply
    return reply.model_copy(update={"id": f"ai-{uuid4().hex}"})
