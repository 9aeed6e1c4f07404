"""Time of the `compact` step per round, by history length (100, 1,000 and 5,000 messages).

Each size starts from a history of that many messages (rounds of one tool call and a 2 KB
result), lets compaction see it once (the one-time rebuild after a restart), then times the
compact node on each of 300 further rounds. The figures are ratios to the 100-message run of
the same invocation, since these machines are shared and noisy. For comparison, the second
column re-counts the whole view every round from cached per-message counts, which is what a
non-incremental compaction must do at least.

Run: python bench/compact_bench.py
"""

from __future__ import annotations

import platform
import statistics
import time
from datetime import date
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.runtime import Runtime

from graphloop.graph import CompactionSettings, LoopContext, ModelConfig
from graphloop.nodes import LoopState, compact
from graphloop.nodes.view import state_view

SIZES = (100, 1_000, 5_000)
ROUNDS = 300
RESULT = ("lorem ipsum dolor sit amet, consectetur adipiscing elit " * 40)[:2_000]


def fetch(key: str) -> str:
    """Fetch a document."""
    return key


def round_messages(i: int) -> list[AnyMessage]:
    call = {"name": "fetch", "args": {"key": f"doc-{i}"}, "id": f"call-{i}"}
    return [AIMessage("", tool_calls=[call], id=f"ai-{i}"),
            ToolMessage(f"{i} {RESULT}", tool_call_id=f"call-{i}", name="fetch", id=f"tool-{i}")]


def measure(size: int, context: LoopContext) -> tuple[float, float]:
    """Median seconds per round: the compact node, and a full recount of the view."""
    messages: list[AnyMessage] = [SystemMessage("You are a researcher.", id="sys"),
                                  HumanMessage("Summarise the documents.", id="task")]
    i = 0
    while len(messages) < size:
        messages += round_messages(i)
        i += 1
    state = LoopState(messages=messages, compacted=[])
    runtime: Any = Runtime(context=context)

    def step() -> float:
        started = time.perf_counter()
        update = compact(state, runtime)
        elapsed = time.perf_counter() - started
        # what LangGraph's DeltaChannel does with the update; not part of the step's cost
        state["compacted"] = [*state.get("compacted", []), *update.get("compacted", [])]
        return elapsed

    step()  # the one-time rebuild
    node: list[float] = []
    recount: list[float] = []
    for _ in range(ROUNDS):
        messages += round_messages(i)
        i += 1
        node.append(step())
        started = time.perf_counter()
        context.counter.request(state_view(state, context.compaction))
        recount.append(time.perf_counter() - started)
    return statistics.median(node), statistics.median(recount)


def main() -> None:
    model = ModelConfig("bench", "http://127.0.0.1:9/v1", "bench", context_k=16)
    context = LoopContext.create(models=[model], tools=[fetch], compaction=CompactionSettings())
    results = {size: measure(size, context) for size in SIZES}
    base_node, base_recount = results[SIZES[0]]
    print(f"compact step per round — {date.today()}, {platform.machine()}, "
          f"Python {platform.python_version()}, {ROUNDS} rounds per size, 2 KB results")
    print(f"{'messages':>9} | {'compact node':>14} | {'ratio':>6} | {'full recount':>14} | {'ratio':>6}")
    for size, (node, recount) in results.items():
        print(f"{size:>9} | {node * 1e6:>11.0f} µs | {node / base_node:>5.2f}× | "
              f"{recount * 1e6:>11.0f} µs | {recount / base_recount:>5.2f}×")


if __name__ == "__main__":
    main()
