"""Replies cut short or not a chat completion at all: nothing runs from half a call, and junk
counts as the model failing. Streams go through LangGraph's `messages` mode, as served UIs
and `Orchestrator.stream` use them, against the strict scripted server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from graphloop.graph import LoopContext, ModelUnavailableError, compile_graph, memory_saver
from graphloop.graph.testing import ScriptedReply, ScriptedServer, junk, reply, tool_call

from conftest import CALLS, TOOLS
from test_faults import FAST
from test_loop import start, tool_messages

RAN: list[dict[str, object]] = []


def transfer(to: str, amount: int) -> str:
    """Move money to an account."""
    RAN.append({"to": to, "amount": amount})
    return f"sent {amount} to {to}"


CUT_ARGS = '{"to": "acct-77", "amount": 10'
"""`{"to": "acct-77", "amount": 1000}`, cut off: langchain-core's repair makes it `amount=10`."""


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


@pytest.fixture
def server(streaming_server: ScriptedServer) -> ScriptedServer:
    return streaming_server


def streamed(context: LoopContext, task: str, thread: str = "t") -> dict[str, Any]:
    """The final state of a run streamed with tokens (what a chat UI does)."""
    graph = compile_graph(memory_saver())
    state: dict[str, Any] = {}
    for mode, chunk in graph.stream(start(task), {"configurable": {"thread_id": thread}}, context=context,
                                    stream_mode=["messages", "values"]):
        if mode == "values":
            state = chunk
    return state


def context_for(server: ScriptedServer, **kw: Any) -> LoopContext:
    return LoopContext.create(models=[server.model_config(**FAST)], tools=[transfer, *TOOLS], **kw)


CUTS = {
    "finish_reason length": reply(None, tool_call("transfer", CUT_ARGS), finish_reason="length"),
    "content_filter": reply(None, tool_call("transfer", CUT_ARGS), finish_reason="content_filter"),
    "length sent twice": reply(None, tool_call("transfer", CUT_ARGS), finish_reason="length,length"),
    "length then stop": reply(None, tool_call("transfer", CUT_ARGS), finish_reason="length,stop"),
    "finished but truncated": reply(None, tool_call("transfer", CUT_ARGS), finish_reason="tool_calls"),
}


@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
def test_a_streamed_call_cut_off_mid_arguments_does_not_run(server: ScriptedServer, cut: ScriptedReply) -> None:
    server.add(cut, reply("I will ask again with the whole amount."))
    state = streamed(context_for(server), "send 1000 to acct-77")
    assert RAN == []  # not transfer(to="acct-77", amount=10)
    [answer] = tool_messages(state)
    assert answer.status == "error" and "was not run" in answer.text
    assert "cut off" in answer.text or "not valid JSON" in answer.text
    # what the model sent comes back to it as text, not as the repaired `amount: 10`
    second = server.requests[1].messages
    sent_call = next(m for m in second if m.get("tool_calls"))["tool_calls"][0]
    assert json.loads(sent_call["function"]["arguments"]) == {"unparsed_arguments": CUT_ARGS}


STOPPED = {
    "connection closed": reply(None, tool_call("transfer", CUT_ARGS), cut=True),
    "no finish_reason": reply(None, tool_call("transfer", CUT_ARGS), finish_reason=None),
}


@pytest.mark.parametrize("stopped", STOPPED.values(), ids=STOPPED.keys())
def test_a_stream_that_stops_before_its_finish_is_asked_again_whole_without_streaming(
    server: ScriptedServer, stopped: ScriptedReply
) -> None:
    server.add(stopped, reply(None, tool_call("transfer", to="acct-77", amount=1000)), reply("sent"))
    state = streamed(context_for(server), "send 1000 to acct-77")
    assert RAN == [{"to": "acct-77", "amount": 1000}]  # once, whole; never amount=10
    assert [r.body.get("stream", False) for r in server.requests] == [True, False, True]
    assert state["messages"][-1].text == "sent"


def test_a_cut_stream_teaches_nothing_about_streaming_with_tools(server: ScriptedServer) -> None:
    from graphloop.nodes.wire import learned

    server.add(reply(None, tool_call("transfer", CUT_ARGS), cut=True),
               reply(None, tool_call("transfer", to="a", amount=1)), reply("ok"))
    model = server.model_config(**FAST)
    streamed(LoopContext.create(models=[model], tools=[transfer]), "pay")
    assert not learned(model).no_stream_with_tools  # it did stream: its later requests still do


def test_a_cut_reply_runs_none_of_its_calls_even_those_that_parse(server: ScriptedServer) -> None:
    whole = tool_call("get_weather", city="Oslo")
    server.add(reply(None, whole, tool_call("transfer", '{"to": "acct-77"}'), finish_reason="length"),
               reply("done"))
    state = streamed(context_for(server), "weather, then pay")
    assert RAN == [] and CALLS == []
    assert [m.text.startswith("Error: your call to") for m in tool_messages(state)] == [True, True]


def test_a_cut_off_gated_call_is_never_shown_to_a_person(server: ScriptedServer) -> None:
    server.add(reply(None, tool_call("transfer", CUT_ARGS), cut=True), reply("asking again"))
    state = streamed(context_for(server, confirm_required=["transfer"]), "pay")
    assert not state.get("pending") and RAN == []
    assert state["messages"][-1].text == "asking again"  # no pause: nothing was put to a person


def test_a_whole_streamed_call_still_runs(server: ScriptedServer) -> None:
    server.add(reply(None, tool_call("transfer", to="acct-77", amount=1000)), reply("sent"))
    streamed(context_for(server), "pay")
    assert RAN == [{"to": "acct-77", "amount": 1000}]


def test_a_non_streamed_call_with_finish_reason_length_does_not_run(server: ScriptedServer) -> None:
    server.add(reply(None, tool_call("transfer", to="acct-77", amount=10), finish_reason="length"),
               reply("retrying"))
    state = compile_graph().invoke(start("pay"), context=context_for(server))
    assert RAN == [] and "finish_reason 'length'" in tool_messages(state)[0].text


def test_half_an_answer_from_a_cut_stream_is_asked_again(server: ScriptedServer) -> None:
    server.add(reply("The total is 12", cut=True), reply("The total is 1234."))
    state = streamed(context_for(server), "total?")
    assert state["messages"][-1].text == "The total is 1234."
    assert [r.body.get("stream", False) for r in server.requests] == [True, False]


JUNK = {
    "an HTML page": ("<html><body>Sign in to the proxy</body></html>", "the body is not JSON"),
    "choices: []": ({"choices": []}, "choices is empty"),
    "no choices": ({"error": "upstream down"}, "it has no choices: 'upstream down'"),
    "message: null": ({"choices": [{"index": 0, "message": None, "finish_reason": "stop"}]},
                      "choices[0].message is null"),
    "tool_calls as an object": ({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": {"id": "c", "type": "function", "function": {"name": "add", "arguments": "{}"}}}}]},
        "choices[0].message.tool_calls is an object, not a list"),
    "content a number": ({"choices": [{"index": 0, "message": {"role": "assistant", "content": 5}}]},
                         "choices[0].message.content is int, not text"),
    "content a list of numbers": ({"choices": [{"index": 0, "message": {"role": "assistant", "content": [1, 2]}}]},
                                  "choices[0].message.content is a list, not text"),
    "a tool's message": ({"choices": [{"index": 0, "message": {"role": "tool", "content": "x"}}]},
                         "choices[0].message.role is 'tool', not 'assistant'"),
    "an empty body": ("", "the body is"),
}


@pytest.fixture
def backup() -> Iterator[ScriptedServer]:
    with ScriptedServer(strict=True) as srv:
        yield srv
        srv.assert_all_used()


@pytest.mark.parametrize(("body", "said"), JUNK.values(), ids=JUNK.keys())
def test_a_reply_that_is_not_a_chat_completion_fails_over_to_the_backup(
    server: ScriptedServer, backup: ScriptedServer, body: Any, said: str
) -> None:
    server.add(junk(body), junk(body))  # one retry, then the next model
    backup.add(reply("from the backup"))
    models = [server.model_config(label="primary", max_retries=1, **FAST),
              backup.model_config(label="backup", **FAST)]
    state = compile_graph().invoke(start("hi"), context=LoopContext.create(models=models, tools=TOOLS))
    assert isinstance(state["messages"][-1], AIMessage)
    assert state["messages"][-1].text == "from the backup" and state["answered_by"] == "backup"


@pytest.mark.parametrize(("body", "said"), JUNK.values(), ids=JUNK.keys())
def test_junk_from_the_only_model_names_it_and_what_was_wrong(server: ScriptedServer, body: Any, said: str) -> None:
    server.add(junk(body))
    context = LoopContext.create(models=[server.model_config(label="primary", max_retries=0)], tools=TOOLS)
    with pytest.raises(ModelUnavailableError) as caught:
        compile_graph().invoke(start("hi"), context=context)
    assert "'primary'" in str(caught.value) and said in str(caught.value)
    assert "not a chat completion" in str(caught.value)


def test_junk_in_the_middle_of_a_run_loses_no_tool_result(server: ScriptedServer, backup: ScriptedServer) -> None:
    server.add(reply(None, tool_call("add", a=2, b=3)), junk({"choices": []}))
    backup.add(reply("5"))
    models = [server.model_config(label="primary", max_retries=0, **FAST), backup.model_config(label="backup")]
    state = compile_graph().invoke(start("add"), context=LoopContext.create(models=models, tools=TOOLS))
    assert CALLS == [("add", {"a": 2, "b": 3})]
    assert [m.text for m in state["messages"] if isinstance(m, ToolMessage)] == ["5"]
    assert backup.requests[0].messages[-1]["role"] == "tool"  # the backup saw the result


def test_arguments_sent_as_an_object_are_taken_as_their_json(server: ScriptedServer) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "transfer", "arguments": {"to": "a", "amount": 3}}}
    server.add(junk({"id": "x", "object": "chat.completion", "created": 1, "model": "scripted", "choices": [
        {"index": 0, "finish_reason": "tool_calls",
         "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}), reply("sent"))
    state = compile_graph().invoke(start("pay"), context=context_for(server))
    assert RAN == [{"to": "a", "amount": 3}] and state["messages"][-1].text == "sent"
