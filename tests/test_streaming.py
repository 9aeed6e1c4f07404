"""Streaming: tokens through `stream_mode="messages"`, node updates, and the Orchestrator's events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from graphloop.graph import (
    CompactionSettings,
    InvalidDecisionError,
    LoopContext,
    ModelConfig,
    Orchestrator,
    clarify,
    compile_graph,
    memory_saver,
)
from graphloop.graph.results import Compacted, Finished, ModelReply, Paused, RunEvent, Token, ToolResult
from graphloop.graph.testing import ScriptedServer, reply, tool_call
from graphloop.nodes.branches import ask_user

from conftest import TOOLS
from test_loop import start

CONFIG: Any = {"configurable": {"thread_id": "s"}}


@pytest.fixture
def server(streaming_server: ScriptedServer) -> ScriptedServer:
    """These tests are about streamed tokens: the strict server streams with tools, as OpenAI does."""
    return streaming_server


def test_updates_mode_yields_the_compaction_record_and_the_interrupt(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("Delete /tmp/x?"))
    graph = compile_graph(memory_saver())
    updates = list(graph.stream(start("delete"), CONFIG, context=context, stream_mode="updates"))
    nodes = [next(iter(u)) for u in updates]
    assert nodes == ["compact", "call_model", "execute_tools", "ask_confirmation", "__interrupt__"]
    record = updates[0]["compact"]["compaction"]
    assert record["budget"] == context.budget_tokens and record["tokens_after"] <= record["budget"]
    assert updates[-1]["__interrupt__"][0].value["action_requests"][0]["name"] == "delete_file"


def test_message_tokens_arrive_in_order_before_the_node_update(server: ScriptedServer, context: LoopContext) -> None:
    text = "One, two, three, four, five, six, seven."
    server.add(reply(text))
    seen: list[tuple[str, str]] = []
    for mode, chunk in compile_graph().stream(start("count"), context=context,
                                              stream_mode=["messages", "updates"]):
        if mode == "messages" and chunk[0].content:
            seen.append(("token", str(chunk[0].content)))
        elif mode == "updates":
            seen.append(("update", next(iter(chunk))))
    tokens = [t for kind, t in seen if kind == "token"]
    assert len(tokens) > 3 and "".join(tokens) == text
    assert seen.index(("update", "call_model")) > max(i for i, (kind, _) in enumerate(seen) if kind == "token")
    assert server.requests[0].body["stream"] is True


def test_astream_yields_the_same_tokens_asynchronously(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply("Async tokens, in order, as the server sends them."))

    async def collect() -> list[str]:
        return [str(chunk.content) async for chunk, meta in compile_graph().astream(
            start("go"), context=context, stream_mode="messages")
            if meta["langgraph_node"] == "call_model" and chunk.content]

    tokens = asyncio.run(collect())
    assert len(tokens) > 3 and "".join(tokens) == "Async tokens, in order, as the server sends them."


def events_of(stream: Any) -> list[RunEvent]:
    async def collect() -> list[RunEvent]:
        return [event async for event in stream]

    return asyncio.run(collect())


def test_the_orchestrator_streams_tokens_results_compaction_then_pause_and_finish(
    server: ScriptedServer, model: ModelConfig, db: Path
) -> None:
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    server.add(reply("Checking.", tool_call("add", a=1, b=2), tool_call("delete_file", path="/x")),
               reply("May I delete /x?"))
    events = events_of(orch.stream("add, then delete"))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Compacted"
    first_reply = kinds.index("ModelReply")
    assert set(kinds[1:first_reply]) == {"Token"}
    assert "".join(e.text for e in events[1:first_reply] if isinstance(e, Token)) == "Checking."
    [result] = [e for e in events if isinstance(e, ToolResult)]
    assert (result.name, result.text, result.status) == ("add", "3", "success")
    assert isinstance(events[-2], Paused) and isinstance(events[-1], Finished)
    assert events[-2].checkpoint == events[-1].result.checkpoint
    assert events[-1].result.response == "May I delete /x?"
    assert isinstance(events[0], Compacted) and events[0].record["tokens_after"] > 0
    assert [e.model for e in events if isinstance(e, ModelReply)] == ["primary"]

    server.add(reply("Deleted."))
    resumed = events_of(orch.stream_resume(events[-1].result.thread_id, confirmed=True))
    assert [e.text for e in resumed if isinstance(e, ToolResult)] == ["deleted /x"]
    assert isinstance(resumed[-1], Finished) and resumed[-1].result.response == "Deleted."
    assert "".join(e.text for e in resumed if isinstance(e, Token)) == "Deleted."


def test_run_does_not_ask_the_server_to_stream(server: ScriptedServer, model: ModelConfig, db: Path) -> None:
    server.add(reply("hi"))
    Orchestrator(TOOLS, db=db, models=[model]).run_sync("hi")
    assert not server.requests[0].body.get("stream")


def test_a_question_pause_through_the_orchestrator_is_resumed_with_an_answer(
    server: ScriptedServer, model: ModelConfig, db: Path
) -> None:
    orch = Orchestrator([*TOOLS, ask_user], db=db, models=[model], branches=[clarify()],
                        compaction=CompactionSettings())
    server.add(reply(None, tool_call("ask_user", question="Which city?")))
    paused = orch.run_sync("weather")
    assert paused.checkpoint is not None and paused.checkpoint.kind == "question"
    assert paused.response == "Which city?"
    with pytest.raises(InvalidDecisionError, match=r"waits for an answer to a question, not a decision; "
                       r"pass answer='...'"):
        orch.resume_sync(paused.checkpoint, confirmed=True)
    server.add(reply("Oslo it is: sunny."))
    done = orch.resume_sync(paused.checkpoint, answer="Oslo")
    assert done.response == "Oslo it is: sunny."
    assert server.requests[-1].messages[-1]["content"] == "Oslo"
