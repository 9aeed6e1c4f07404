"""OpenTelemetry spans for a run that calls a plain tool, pauses at the gate, and resumes in a
new process: names, the tree and attributes pinned, and no key or tool content in any of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from graphloop.graph import Orchestrator
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import SECRET, TOOLS

HERE = Path(__file__).parent
_exporter = InMemorySpanExporter()


_attached: list[TracerProvider] = []


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """This process's spans, recorded by the SDK (a process sets one provider: another test,
    or a docs example, may have set it already)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    if provider not in _attached:
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        _attached.append(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def tree(finished: tuple[ReadableSpan, ...] | list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(name, parent's name) of each span, in the order they ended."""
    if finished and isinstance(finished[0], dict):
        return [(s["name"], s["parent"]) for s in finished]  # pyright: ignore[reportUnknownVariableType, reportIndexIssue, reportCallIssue, reportArgumentType]
    by_id = {s.context.span_id: s.name for s in finished if isinstance(s, ReadableSpan) and s.context}
    return [(s.name, by_id.get(s.parent.span_id) if s.parent else None)
            for s in finished if isinstance(s, ReadableSpan)]


def attributes(finished: Any) -> list[dict[str, Any]]:
    return [dict(s["attributes"] if isinstance(s, dict) else s.attributes or {}) for s in finished]


def test_a_run_that_pauses_and_resumes_in_another_process_is_traced(
    streaming_server: ScriptedServer, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    server, db = streaming_server, tmp_path / "traced.db"
    model = server.model_config(label="primary", api_key=SECRET, max_retries=0)
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    server.add(reply(None, tool_call("add", a=2, b=3), tool_call("delete_file", path="/tmp/secret-file")),
               reply("May I delete /tmp/secret-file?"), reply("Deleted it; 2 + 3 = 5."))
    paused = orch.run_sync("add, then delete")
    assert paused.checkpoint is not None
    first = spans.get_finished_spans()
    assert tree(first) == [
        ("graphloop.compact", "invoke_agent graphloop"),
        ("chat scripted", "graphloop.call_model"),
        ("graphloop.call_model", "invoke_agent graphloop"),
        ("graphloop.execute_tools", "invoke_agent graphloop"),
        ("execute_tool add", "graphloop.run_tool"),
        ("graphloop.run_tool", "invoke_agent graphloop"),
        ("chat scripted", "graphloop.ask_confirmation"),
        ("graphloop.ask_confirmation", "invoke_agent graphloop"),
        ("graphloop.interrupt_for_confirm", "invoke_agent graphloop"),
        ("invoke_agent graphloop", None),
    ]
    run = first[-1].attributes or {}
    assert {k: run[k] for k in ("gen_ai.operation.name", "gen_ai.agent.name", "graphloop.thread_id",
                                "graphloop.paused", "graphloop.interrupt_id")} == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "graphloop",
        "graphloop.thread_id": paused.thread_id, "graphloop.paused": True,
        "graphloop.interrupt_id": paused.checkpoint.interrupt_id}
    assert paused.usage is not None and run["gen_ai.usage.input_tokens"] == paused.usage.input_tokens
    chat = first[1].attributes or {}
    assert {k: chat[k] for k in ("gen_ai.operation.name", "gen_ai.request.model", "graphloop.model_label",
                                 "graphloop.outcome", "server.address", "graphloop.usage_counted")} == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "scripted", "graphloop.model_label": "primary",
        "graphloop.outcome": "answered", "server.address": "127.0.0.1", "graphloop.usage_counted": False}
    assert chat["gen_ai.usage.input_tokens"] == server.usages[0]["prompt_tokens"]
    tool = first[4].attributes or {}
    assert dict(tool) == {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "add",
                          "gen_ai.tool.call.id": "call_1_0", "graphloop.status": "success"}
    assert first[8].attributes and first[8].attributes["graphloop.paused"] is True  # the interrupt, not an error

    out = tmp_path / "child-spans.json"
    subprocess.run([sys.executable, str(HERE / "trace_child.py"), str(db), paused.thread_id, server.url, str(out)],
                   check=True, cwd=HERE, env={**os.environ, "PYTHONPATH": str(HERE)}, timeout=120)
    resumed = json.loads(out.read_text())
    assert tree(resumed) == [
        ("graphloop.interrupt_for_confirm", "invoke_agent graphloop"),  # re-run, now with the decision
        ("graphloop.execute_tools", "invoke_agent graphloop"),
        ("execute_tool delete_file", "graphloop.run_tool"),
        ("graphloop.run_tool", "invoke_agent graphloop"),
        ("graphloop.compact", "invoke_agent graphloop"),
        ("chat scripted", "graphloop.call_model"),
        ("graphloop.call_model", "invoke_agent graphloop"),
        ("graphloop.finalize", "invoke_agent graphloop"),
        ("invoke_agent graphloop", None),
    ]
    root = resumed[-1]["attributes"]
    assert root["graphloop.decisions"] == ["approve"] and root["graphloop.paused"] is False
    everything = json.dumps(attributes(first), default=list) + json.dumps(attributes(resumed), default=list)
    assert SECRET not in everything and "secret-file" not in everything and "deleted /tmp" not in everything


def test_content_is_captured_only_when_asked(
    server: ScriptedServer, spans: InMemorySpanExporter, sqlite_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = server.model_config(label="primary", max_retries=0)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    server.add(reply(None, tool_call("add", a=2, b=3)), reply("5"))
    Orchestrator(TOOLS, db=sqlite_db, models=[model]).run_sync("add")
    [tool] = [s for s in spans.get_finished_spans() if s.name == "execute_tool add"]
    assert tool.attributes is not None
    assert (tool.attributes["gen_ai.tool.call.arguments"], tool.attributes["gen_ai.tool.call.result"]) == (
        '{"a": 2, "b": 3}', "5")


def test_a_failed_model_call_carries_its_error_type_not_its_text(
    server: ScriptedServer, spans: InMemorySpanExporter, sqlite_db: Path
) -> None:
    from graphloop.graph import ModelUnavailableError
    from graphloop.graph.testing import error

    server.add(error(503, f"upstream down, key {SECRET}"))
    model = server.model_config(label="primary", api_key=SECRET, max_retries=0)
    with pytest.raises(ModelUnavailableError):
        Orchestrator(TOOLS, db=sqlite_db, models=[model]).run_sync("hi")
    [chat] = [s for s in spans.get_finished_spans() if s.name == "chat scripted"]
    assert chat.attributes is not None and chat.attributes["error.type"] == "ModelCallError"
    assert chat.attributes["graphloop.outcome"] == "failed"
    assert SECRET not in json.dumps([dict(s.attributes or {}) for s in spans.get_finished_spans()], default=list)


def test_a_failed_tool_call_is_an_error_span_without_its_text(
    server: ScriptedServer, spans: InMemorySpanExporter, sqlite_db: Path
) -> None:
    from opentelemetry.trace import StatusCode

    server.add(reply(None, tool_call("fail", reason=f"disk {SECRET} full")), reply("It failed."))
    Orchestrator(TOOLS, db=sqlite_db, models=[server.model_config(label="primary")]).run_sync("try")
    [tool] = [s for s in spans.get_finished_spans() if s.name == "execute_tool fail"]
    assert tool.status.status_code == StatusCode.ERROR and tool.attributes is not None
    assert (tool.attributes["error.type"], tool.attributes["graphloop.status"]) == ("tool_error", "error")
    assert SECRET not in json.dumps([dict(s.attributes or {}) for s in spans.get_finished_spans()], default=list)
