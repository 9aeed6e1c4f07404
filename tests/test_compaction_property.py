"""Property: whatever the history, every request sent fits its budget and is well formed."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage

from graphloop.graph import CompactionSettings, LoopContext, compile_graph
from graphloop.graph.testing import ScriptedServer, reply

from test_compaction import sent_tokens

SNIPPETS = ["plain ascii text ", "Grüße aus Köln — ", "日本語のテキスト ", "emoji 🎉🚀 ", "{\"json\": [1, 2]} ",
            "   \n\t", "ab"]


def fetch(key: str) -> str:
    """Fetch a document."""
    return key


@st.composite
def results(draw: st.DrawFn) -> str:
    size = draw(st.one_of(st.integers(0, 2_000), st.integers(0, 20_000), st.integers(0, 200_000)))
    snippet = draw(st.sampled_from(SNIPPETS))
    return (snippet * (size // len(snippet) + 1))[:size]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[AnyMessage], int, CompactionSettings]:
    messages: list[AnyMessage] = [SystemMessage(draw(st.text(max_size=200)) or "system")]
    for _ in range(draw(st.integers(0, 2))):  # earlier conversation
        messages += [HumanMessage(draw(st.text(max_size=300)) or "q"),
                     AIMessage(draw(results()) or "a")]
    messages.append(HumanMessage(draw(st.text(min_size=1, max_size=200))))
    call_id = 0
    for _ in range(draw(st.integers(1, 10))):
        calls = []
        for _ in range(draw(st.integers(1, 3))):
            calls.append({"name": "fetch", "args": {"key": draw(st.text(max_size=40))}, "id": f"c{call_id}"})
            call_id += 1
        messages.append(AIMessage(draw(st.text(max_size=100)), tool_calls=calls))
        messages += [ToolMessage(draw(results()), tool_call_id=c["id"], name="fetch") for c in calls]
    context_k = draw(st.sampled_from([2, 4, 8, 16, 32]))
    compaction = CompactionSettings(keep=draw(st.integers(0, 8)),
                                    keep_chars=draw(st.sampled_from([0, 100, 400])),
                                    exclude_tools=draw(st.sampled_from([frozenset(), frozenset({"fetch"})])))
    return messages, context_k, compaction


def well_formed(sent: list[dict[str, Any]]) -> None:
    answered: set[str] = set()
    open_calls: set[str] = set()
    for message in sent:
        if message["role"] == "assistant":
            assert not open_calls, "a tool call was left unanswered"
            open_calls = {c["id"] for c in message.get("tool_calls", [])}
        elif message["role"] == "tool":
            assert message["tool_call_id"] in open_calls, "orphaned tool message"
            open_calls.discard(message["tool_call_id"])
            answered.add(message["tool_call_id"])
        else:
            assert not open_calls, "a tool call was left unanswered"
    assert not open_calls, "a tool call was left unanswered"


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histories())
def test_every_request_fits_and_keeps_system_task_and_whole_rounds(
    case: tuple[list[AnyMessage], int, CompactionSettings],
) -> None:
    messages, context_k, compaction = case
    task = next(m for m in reversed(messages) if isinstance(m, HumanMessage))
    with ScriptedServer([reply("done")], strict=True) as server:
        context = LoopContext.create(models=[server.model_config(context_k=context_k)],
                                     tools=[fetch], compaction=compaction)
        out = compile_graph().invoke({"messages": messages}, context=context)
        server.assert_all_used()
    record = out["compaction"]
    for step in ("cleared", "dropped", "shortened"):
        event(f"{step}: {bool(record[step])}")
    [request] = server.requests
    sent = request.messages
    assert sent_tokens(request) <= context.budget_tokens == out["compaction"]["budget"]
    if str(messages[0].content).strip():
        assert sent[0] == {"role": "system", "content": messages[0].content}
    else:  # a blank system prompt is not sent (servers refuse an empty one)
        assert all(m["role"] != "system" for m in sent)
    assert {"role": "user", "content": task.content} in sent
    well_formed(sent)
    assert json.dumps(sent)  # valid JSON went out
    assert len(out["messages"]) == len(messages) + 1  # history whole, plus the answer
