"""Parity compaction: old tool results are truncated in the request, never in state."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from graphloop.graph import LoopContext, ModelConfig, compile_graph
from graphloop.graph.testing import ScriptedServer, reply, tool_call
from graphloop.nodes.view import truncate
from test_loop import start


def big(i: int) -> str:
    """Return a large result."""
    return f"result {i} " + "y" * 9_000


def test_truncate_keeps_400_chars_and_names_what_was_omitted() -> None:
    assert truncate("a" * 1000) == "a" * 400 + " …[600 chars omitted]"
    assert truncate("short") == "short"


def test_budget_is_75_percent_of_the_window_and_at_least_16k() -> None:
    def budget(k: int) -> int:
        return ModelConfig(label="m", api_url="http://x", model_name="m", context_k=k).budget_tokens
    assert (budget(8), budget(16), budget(32), budget(128)) == (16_000, 16_000, 24_000, 96_000)


def test_old_tool_results_are_truncated_in_the_request_and_whole_in_state(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    model = server.model_config(context_k=16)
    context = LoopContext.create(models=[model], tools=[big])
    server.add(*[reply(None, tool_call("big", i=i)) for i in range(8)], reply("done"))
    caplog.set_level(logging.INFO, logger="graphloop.nodes.compact")
    out: dict[str, Any] = compile_graph().invoke(start("go", max_rounds=10), context=context)

    last = server.requests[-1].messages
    sent = [m["content"] for m in last if m["role"] == "tool"]
    assert sent[0] == truncate(big(0)) and sent[1] == truncate(big(1))
    assert sent[0].endswith(" …[8609 chars omitted]")
    assert sent[2:] == [big(i) for i in range(2, 8)]

    kept = [m.content for m in out["messages"] if isinstance(m, ToolMessage)]
    assert kept == [big(i) for i in range(8)]

    record = out["compaction"]
    assert record["budget"] == 16_000
    assert record["tokens_before"] > record["budget"]
    chars_saved_each = len(big(0)) - len(truncate(big(0)))
    assert abs(record["tokens_before"] - record["tokens_after"] - 2 * chars_saved_each / 4) <= 1
    assert len(record["cleared"]) == 2
    assert any("context compaction: saved ~" in r.getMessage() for r in caplog.records)


def test_a_cleared_result_stays_cleared_so_the_prefix_is_stable(server: ScriptedServer) -> None:
    model = server.model_config(context_k=16)
    context = LoopContext.create(models=[model], tools=[big])
    server.add(*[reply(None, tool_call("big", i=i)) for i in range(9)], reply("done"))
    compile_graph().invoke(start("go", max_rounds=10), context=context)
    eighth, ninth, tenth = (server.requests[i].messages for i in (7, 8, 9))
    first_tool = [m for m in eighth if m["role"] == "tool"][0]
    assert [m for m in ninth if m["role"] == "tool"][0] == first_tool
    assert [m for m in tenth if m["role"] == "tool"][0] == first_tool
    # everything up to the result cleared this round is sent again byte for byte
    assert ninth[:4] == eighth[:4] and tenth[:6] == ninth[:6]
