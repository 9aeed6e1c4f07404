"""The model chain: retries with backoff, then the next model; a clear error when all fail.

Per model: connection errors, timeouts, 408, 409, 429 and 5xx are retried `max_retries` times
with exponential backoff and jitter (a `Retry-After` is honoured, up to `retry_max_delay`); an
empty reply is asked again once. Then the next model is tried; a 404 (model not there) moves on
at once. 401, 403 and other 4xx stop the chain with the model's label (a wrong key or request
will not get better elsewhere); a context-length error goes back to `call_model`, which
compacts and retries the same model.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from graphloop.checkpointers import (
    ContextOverflowError,
    EmptyReplyError,
    ModelCallError,
    ModelUnavailableError,
)
from graphloop.nodes.calls import STREAMED
from graphloop.nodes.chat import call_chat_model
from graphloop.nodes.models import ModelConfig, ToolChoice
from graphloop.nodes.usage import ended
from graphloop.nodes.wire import learn

__all__ = ["call_models", "is_empty", "retryable"]

logger = logging.getLogger(__name__)

_RETRYABLE = {408, 409, 429}


def retryable(error: ModelCallError) -> bool:
    """Whether trying the same model again may help."""
    return error.status is None or error.status in _RETRYABLE or error.status >= 500


def is_empty(reply: AIMessage) -> bool:
    """A reply with no text and no tool calls, valid or not."""
    return not reply.text.strip() and not reply.tool_calls and not reply.invalid_tool_calls


def _delay(model: ModelConfig, attempt: int, error: ModelCallError) -> float:
    if error.retry_after is not None:
        return min(error.retry_after, model.retry_max_delay)
    backoff = min(model.retry_max_delay, model.retry_base_delay * 2**attempt)
    return backoff * (0.5 + random.random() / 2)


async def _one_model(
    model: ModelConfig, messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]], stream: bool,
    tool_choice: ToolChoice | None,
) -> AIMessage:
    """`model`'s reply after its own retries; raises its last `ModelCallError`.

    An empty reply (or a stream without a chunk) is asked again once, without streaming; a
    model that then answers, having streamed nothing or an empty reply with tools offered (as
    llama-cpp-python and LiteLLM do), is asked without streaming from then on
    (`graphloop.nodes.wire`).
    """
    asked_again = nothing_streamed = False
    attempt = 0
    while True:
        try:
            reply: AIMessage | None = await call_chat_model(
                model, messages, [dict(t) for t in tools], stream=stream and not asked_again,
                tool_choice=tool_choice)
        except EmptyReplyError as empty:
            reply, nothing_streamed = None, nothing_streamed or empty.nothing_streamed
        except ContextOverflowError:
            raise
        except ModelCallError as error:
            if not retryable(error) or attempt >= model.max_retries:
                raise
            ended("retried")
            wait = _delay(model, attempt, error)
            logger.warning("%s; retry %d of %d in %.2f s", error, attempt + 1, model.max_retries, wait)
            await asyncio.sleep(wait)
            attempt += 1
            continue
        if reply is not None and not is_empty(reply):
            if nothing_streamed and stream and model.stream and tools and tool_choice != "none":
                learn(model, "no_stream_with_tools")  # not one chunk or an empty one, then an answer
            return reply
        nothing_streamed = nothing_streamed or (reply is not None and STREAMED in reply.response_metadata)
        if asked_again:
            ended("failed")  # noted as answered: an empty reply is no answer
            raise EmptyReplyError(
                f"model {model.label!r} sent an empty reply (no text, no tool calls) twice",
                label=model.label)
        logger.warning("model %r sent an empty or cut-off reply; asking once more, without streaming", model.label)
        ended("retried")
        asked_again = True


async def call_models(
    models: Sequence[ModelConfig],
    messages: Sequence[BaseMessage],
    tools: Sequence[Mapping[str, Any]] = (),
    *,
    stream: bool = True,
    tool_choice: ToolChoice | None = None,
) -> tuple[AIMessage, ModelConfig]:
    """The first usable reply along the chain, and the model that gave it (`stream`: see
    `call_chat_model`; `tool_choice` overrides each model's own).

    Raises:
        ModelUnavailableError: every model failed; the message has each one's last error,
            and so has its `failures`.
        ModelCallError: a model failed in a way another model will not fix (401, 403, 4xx).
        ContextOverflowError: the request is too long for the model that was asked.
    """
    failures: list[tuple[str, ModelCallError]] = []
    for model in models:
        try:
            return await _one_model(model, messages, tools, stream, tool_choice), model
        except ContextOverflowError:
            raise
        except ModelCallError as error:
            if error.status is not None and error.status != 404 and not retryable(error):
                raise
            failures.append((model.label, error))
            if model is not models[-1]:
                ended("fallback")
                logger.warning("model %r failed, trying the next one: %s", model.label, error)
    raise ModelUnavailableError(
        f"every model failed ({len(failures)}); the thread can be resumed from its last "
        "checkpoint once one is back. " + "; ".join(f"{label!r}: {error}" for label, error in failures),
        failures=failures)
