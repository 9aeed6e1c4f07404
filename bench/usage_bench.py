"""What recording usage and tracing cost per round, as ratios to the same run without them.

One process, the scripted server on loopback, 50 rounds of one tool call with a 2,000-character
result, interleaved (each taking each place in the order in turn), medians of 9 runs after a warm-up:

- **without usage**: graphloop with the ledger's `model_calls` rows switched off (the baseline);
- **with usage** (graphloop as it ships): each model call measured, noted and written to the
  ledger; the SDK's tracer provider samples no span, so spans are made but record nothing;
- **with usage and tracing**: the same with the OpenTelemetry SDK recording every span through
  a `BatchSpanProcessor`, as applications export, into an in-memory exporter (no network).

Run: pip install -e '.[otel]' && python bench/usage_bench.py  (about two minutes)
"""

from __future__ import annotations

import asyncio
import platform
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

import graphloop.nodes.usage as usage
from graphloop.graph import ModelConfig, Orchestrator
from graphloop.graph.testing import ScriptedReply, ScriptedServer, reply, tool_call

ROUNDS = 50
RUNS = 9
TEXT = string.ascii_letters + string.digits + " " * 10


def fetch(doc: int) -> str:
    """Fetch a document."""
    return f"{doc}:" + "".join(random.Random(doc).choices(TEXT, k=1_992))


def researcher(rounds: int) -> Callable[[dict[str, Any]], ScriptedReply]:
    def answer(body: dict[str, Any]) -> ScriptedReply:
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        return reply("done") if done >= rounds else reply(None, tool_call("fetch", doc=done))
    return answer


_saving = usage.save_calls


async def _not_saved(*_: Any) -> None:
    return None


class _Tracing(Sampler):
    """The process's tracer provider (one may be set per process), sampling every span while
    `on`, none otherwise (the SDK then makes spans that record nothing)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=self)
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))  # as applications export
        self.on = False
        trace.set_tracer_provider(self.provider)

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP)

    def get_description(self) -> str:
        return "switched"


async def one_run(url: str, db: Path) -> float:
    model = ModelConfig(label="bench", api_url=url, model_name="scripted", max_retries=0, context_k=1000)
    started = time.perf_counter()
    await Orchestrator([fetch], db=db, models=[model], max_rounds=ROUNDS + 1).run("Read every document.")
    return (time.perf_counter() - started) / ROUNDS * 1000


async def measure(tmp: Path) -> dict[str, list[float]]:
    tracing = _Tracing()
    modes = ("without usage", "with usage", "with usage and tracing")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    with ScriptedServer([researcher(ROUNDS)] * ((RUNS + 1) * len(modes) * (ROUNDS + 2))) as server:
        for attempt in range(RUNS + 1):
            turn = attempt % len(modes)  # each mode takes each place in the order in turn
            for n, mode in enumerate(modes[turn:] + modes[:turn]):
                usage.save_calls = _not_saved if mode == "without usage" else _saving  # pyright: ignore[reportAttributeAccessIssue]
                tracing.on = mode == "with usage and tracing"
                took = await one_run(server.url, tmp / f"{attempt}-{n}.db")
                if attempt:  # the first is a warm-up
                    times[mode].append(took)
                tracing.exporter.clear()
    usage.save_calls = _saving
    return times


def table(times: dict[str, Sequence[float]]) -> list[str]:
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    base = medians["without usage"]
    lines = ["| graphloop | ms per round | ratio |", "|---|---|---|"]
    lines += [f"| {mode} | {ms:.2f} | {ms / base:.3f} |" for mode, ms in medians.items()]
    tracing = medians["with usage and tracing"] / medians["with usage"]
    return [*lines, "", f"usage recording: {medians['with usage'] / base - 1:+.1%} a round; tracing: "
            f"{tracing - 1:+.1%} a round (issue 17's target: under 5% each)"]


def main() -> None:
    print(f"# usage and tracing cost, {date.today()}, {platform.machine()} {platform.system()}, "
          f"Python {sys.version.split()[0]}, {ROUNDS} rounds, medians of {RUNS}\n")
    with tempfile.TemporaryDirectory() as tmp:
        print("\n".join(table(asyncio.run(measure(Path(tmp))))))


if __name__ == "__main__":
    main()
