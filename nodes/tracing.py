"""OpenTelemetry spans: one per run, per node, per model call and per tool call.

Optional: with `opentelemetry-api` installed (`pip install -e '.[otel]'`), graphloop makes
spans through the application's tracer provider; graphloop configures no exporter, so without
a provider (or without the package) they cost next to nothing and go nowhere. Names and
attributes follow OpenTelemetry's GenAI semantic conventions:

    invoke_agent graphloop     a run or resume of the Orchestrator: gen_ai.operation.name,
                               graphloop.thread_id, graphloop.run_id, graphloop.decisions,
                               then graphloop.paused, graphloop.interrupt_id, graphloop.stopped_by
                               and the run's gen_ai.usage.input_tokens / output_tokens
    graphloop.<node>           each step of the graph (compact, call_model, run_tool, ...)
    chat <model>               each request to a model: gen_ai.request.model, server.address,
                               gen_ai.usage.input_tokens / output_tokens, graphloop.model_label,
                               graphloop.outcome, graphloop.usage_counted, error.type
    execute_tool <tool>        each tool call that runs: gen_ai.tool.name, gen_ai.tool.call.id,
                               graphloop.status, error.type

A span never holds a key, a message's text, a tool's arguments or its result, unless content
capture is on (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, the conventions'
switch): then a tool span holds `gen_ai.tool.call.arguments` and `gen_ai.tool.call.result`
(each cut to `CAPTURED_CHARS`).
An error is recorded as its type's name only: its text may quote what a server echoed.

Example:
    >>> with span("graphloop.example", {"graphloop.thread_id": "t1"}) as current:
    ...     current.set_attribute("graphloop.status", "success")
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any, Protocol, cast

__all__ = ["CAPTURED_CHARS", "CAPTURE_CONTENT", "SpanLike", "capture_content", "captured", "detached_span", "failed", "span",
           "step_in"]

CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The environment variable that turns content capture on (`true`)."""
CAPTURED_CHARS = 8_192
"""The most characters of an argument list or a result a span holds."""

Attribute = str | bool | int | float | list[str]

try:
    from opentelemetry import trace
except ImportError:  # the otel extra is not installed: no spans
    trace = None


class SpanLike(Protocol):
    """What graphloop does with a span: set attributes (a real span, or one that does nothing)."""

    def set_attribute(self, key: str, value: Attribute) -> Any: ...


class _NoSpan:
    def set_attribute(self, key: str, value: Attribute) -> None:
        return None


_NO_SPAN = _NoSpan()
_VERSION = version("graphloop")


_tracer_of: list[tuple[object, Any]] = []
"""The global provider last seen and its tracer (an SDK provider makes a new tracer per
`get_tracer`, which cost more than the span)."""


def _tracer() -> Any:
    assert trace is not None
    provider = trace.get_tracer_provider()
    if not _tracer_of or _tracer_of[0][0] is not provider:
        _tracer_of[:] = [(provider, provider.get_tracer("graphloop", _VERSION))]
    return _tracer_of[0][1]


def capture_content() -> bool:
    """Whether spans may hold tool arguments and results (`CAPTURE_CONTENT` is true)."""
    return os.environ.get(CAPTURE_CONTENT, "").strip().lower() in ("1", "true", "yes")


def _is_pause(exc: BaseException) -> bool:
    """LangGraph's interrupt (and its other control signals) are not errors."""
    from langgraph.errors import GraphBubbleUp

    return isinstance(exc, GraphBubbleUp)


def failed(current: SpanLike, error_type: str) -> None:
    """Mark `current` failed: `error.type` (a type's or an outcome's name, never an error's
    text, which may quote what a server echoed) and the error status."""
    current.set_attribute("error.type", error_type)
    if trace is not None and not isinstance(current, _NoSpan):
        from opentelemetry.trace import Status, StatusCode

        cast(Any, current).set_status(Status(StatusCode.ERROR))


def captured(text: str) -> str:
    """Content for a span when capture is on, cut to `CAPTURED_CHARS` (an exporter drops a
    batch larger than its limit: OTLP over gRPC takes 4 MB)."""
    return text if len(text) <= CAPTURED_CHARS else text[:CAPTURED_CHARS] + f"… [{len(text):,} characters]"


@contextmanager
def span(name: str, attributes: Mapping[str, Attribute] | None = None) -> Generator[SpanLike, None, None]:
    """A span around the block, current inside it; an exception sets `error.type` (its type's
    name, never its text) and the error status, and goes on."""
    if trace is None:
        yield _NO_SPAN
        return
    with _tracer().start_as_current_span(name, attributes=dict(attributes or {}), record_exception=False,
                                      set_status_on_exception=False) as current:
        try:
            yield current
        except BaseException as exc:
            if _is_pause(exc):
                current.set_attribute("graphloop.paused", True)
            else:
                failed(current, type(exc).__qualname__)
            raise


@contextmanager
def detached_span(name: str, attributes: Mapping[str, Attribute] | None = None) -> Generator[SpanLike, None, None]:
    """A span around the block that is not made current (see `step_in`): for an async
    generator, whose steps may run in its caller's contexts. Errors as in `span`."""
    if trace is None:
        yield _NO_SPAN
        return
    started = _tracer().start_span(name, attributes=dict(attributes or {}))
    try:
        yield started
    except BaseException as exc:
        failed(started, type(exc).__qualname__)
        raise
    finally:
        started.end()


@contextmanager
def step_in(current: SpanLike) -> Generator[None, None, None]:
    """Make `current` (from `span`) the current span again for the block: for an async
    generator's steps, each attached and detached within the same step."""
    if trace is None or isinstance(current, _NoSpan):
        yield
        return
    with trace.use_span(current, end_on_exit=False):  # pyright: ignore[reportArgumentType]  # a real span here
        yield
