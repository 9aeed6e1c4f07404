"""Resume a paused thread in a fresh OS process with OpenTelemetry's SDK recording its spans.

Usage: python trace_child.py DB THREAD_ID API_URL OUT_JSON
Writes each finished span as {"name", "parent", "attributes"} to OUT_JSON.
"""

from __future__ import annotations

import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from graphloop.graph import ModelConfig, Orchestrator

from conftest import SECRET, TOOLS

db, thread_id, api_url, out = sys.argv[1:5]
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
model = ModelConfig(label="primary", api_url=api_url, model_name="scripted", api_key=SECRET, max_retries=0)
Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model]).resume_sync(thread_id, confirmed=True)
by_id = {s.context.span_id: s.name for s in exporter.get_finished_spans() if s.context is not None}
spans = [{"name": s.name, "parent": by_id.get(s.parent.span_id) if s.parent else None,
          "attributes": dict(s.attributes or {})} for s in exporter.get_finished_spans()]
with open(out, "w") as file:
    json.dump(spans, file, default=list)
