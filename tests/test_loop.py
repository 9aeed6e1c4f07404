"""The loop through the compiled graph, the scripted server and the real clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from graphloop.graph import (
    ConfigurationError,
    LoopContext,
    ModelCallError,
    ModelConfig,
    ModelUnavailableError,
    Policy,
    compile_graph,
    memory_saver,
)
from graphloop.graph.testing import ScriptedServer, error, reply, tool_call

from conftest import CALLS, SECRET, TOOLS

CONFIG: Any = {"configurable": {"thread_id": "t"}}


def policy(**overrides: Any) -> Policy:
    values: dict[str, Any] = dict(user_role="user", tool_list=None, confirm_allow=[],
                                  confirm_deny=[], max_rounds=10, respond_with_final=True,
                                  ask_model_to_confirm=True)
    return Policy(**(values | overrides))  # type: ignore[typeddict-item]


def start(task: str, **policy_overrides: Any) -> dict[str, Any]:
    return {"messages": [HumanMessage(task)], "policy": policy(**policy_overrides)}


def tool_messages(state: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


def test_plain_answer_ends_the_run_after_one_request(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply("Hello there."))
    out = compile_graph().invoke(start("hi"), context=context)
    assert out["messages"][-1].content == "Hello there."
    assert out["answered_by"] == "primary"
    assert [m["role"] for m in server.requests[0].messages] == ["user"]
    assert server.requests[0].tool_names == ["add", "get_weather", "delete_file", "fail", "slow_lookup"]


def test_multi_round_loop_feeds_each_result_back(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply(None, tool_call("add", a=2, b=3)),
               reply(None, tool_call("add", a=5, b=10)),
               reply("The sum is 15."))
    out = compile_graph().invoke(start("sum"), context=context)
    assert out["messages"][-1].content == "The sum is 15."
    assert out["rounds"] == 3
    assert [c for c in CALLS] == [("add", {"a": 2, "b": 3}), ("add", {"a": 5, "b": 10})]
    third = server.requests[2].messages
    assert [m["role"] for m in third] == ["user", "assistant", "tool", "assistant", "tool"]
    assert third[2]["content"] == "5" and third[4]["content"] == "15"


def test_async_invoke_gives_the_same_loop(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply(None, tool_call("slow_lookup", key="k")), reply("done"))
    out = asyncio.run(compile_graph().ainvoke(start("look"), context=context))
    assert tool_messages(out)[0].content == json.dumps({"key": "k", "value": "K"})
    assert out["messages"][-1].content == "done"


def test_parallel_calls_of_one_turn_run_concurrently(server: ScriptedServer, model: ModelConfig) -> None:
    both_started = asyncio.Barrier(2)

    async def left(x: int) -> str:
        """Left."""
        await asyncio.wait_for(both_started.wait(), timeout=5)  # deadlocks unless concurrent
        return f"left {x}"

    async def right(x: int) -> str:
        """Right."""
        await asyncio.wait_for(both_started.wait(), timeout=5)
        return f"right {x}"

    server.add(reply(None, tool_call("left", x=1), tool_call("right", x=2)), reply("both"))
    context = LoopContext.create(models=[model], tools=[left, right])
    out = asyncio.run(compile_graph().ainvoke(start("go"), context=context))
    assert [m.content for m in tool_messages(out)] == ["left 1", "right 2"]


@pytest.mark.parametrize("finish_reason", ["stop", None])
def test_tool_calls_are_honoured_whatever_finish_reason_says(
    server: ScriptedServer, context: LoopContext, finish_reason: str | None
) -> None:
    server.add(reply(None, tool_call("add", a=1, b=1), finish_reason=finish_reason), reply("2"))
    out = compile_graph().invoke(start("1+1"), context=context)
    assert CALLS == [("add", {"a": 1, "b": 1})]
    assert out["messages"][-1].content == "2"


def test_tool_outside_the_role_is_neither_offered_nor_run(server: ScriptedServer, model: ModelConfig) -> None:
    context = LoopContext.create(models=[model], tools=TOOLS,
                                 roles={"user": ["add", "get_weather"], "admin": "*"})
    server.add(reply(None, tool_call("delete_file", path="/etc")), reply("ok"))
    out = compile_graph().invoke(start("delete"), context=context)
    assert server.requests[0].tool_names == ["add", "get_weather"]
    assert CALLS == []
    assert tool_messages(out)[0].content == (
        "Error: tool 'delete_file' is not available to role 'user' in this run. "
        "Available tools: add, get_weather.")


def test_tool_list_narrows_the_role_and_admin_star_sees_all(server: ScriptedServer, model: ModelConfig) -> None:
    context = LoopContext.create(models=[model], tools=TOOLS, roles={"user": ["add"], "admin": "*"})
    server.add(reply("a"), reply("b"))
    graph = compile_graph()
    graph.invoke(start("x", user_role="admin", tool_list=["add", "fail"]), context=context)
    graph.invoke(start("x", user_role="admin"), context=context)
    assert server.requests[0].tool_names == ["add", "fail"]
    assert server.requests[1].tool_names == [t.__name__ for t in TOOLS]


def test_bad_tool_calls_get_specific_messages_and_the_loop_goes_on(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(
        reply(None, tool_call("add", '{"a": 1, "b":'), tool_call("add", "[1, 2]"),
              tool_call("nope", {"x": 1}), tool_call("add", a=1, b=2)),
        reply("recovered"),
    )
    out = compile_graph().invoke(start("go"), context=context)
    contents = {m.tool_call_id: m.content for m in tool_messages(out)}
    ids = [c["id"] for c in server.requests[1].messages[1]["tool_calls"]]
    assert ids == ["call_1_0", "call_1_1", "call_1_2", "call_1_3"]
    parameters = ('{"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, '
                  '"required": ["a", "b"], "type": "object"}')
    assert contents["call_1_0"] == (
        "Error: your call to 'add' was not run: the arguments are not valid JSON (Expecting "
        "value at line 1 column 14). Arguments received: '{\"a\": 1, \"b\":'. Call 'add' again "
        f"with a JSON object matching its parameters: {parameters}")
    assert contents["call_1_1"] == (
        "Error: your call to 'add' was not run: the arguments must be a JSON object, got an "
        "array. Arguments received: '[1, 2]'. Call 'add' again with a JSON object matching its "
        f"parameters: {parameters}")
    assert contents["call_1_2"] == (
        "Error: unknown tool 'nope'. Available tools: add, get_weather, delete_file, fail, slow_lookup.")
    assert contents["call_1_3"] == "3"
    assert CALLS == [("add", {"a": 1, "b": 2})]
    assert out["messages"][-1].content == "recovered"
    sent = [m for m in server.requests[1].messages if m["role"] == "tool"]
    assert len(sent) == 4
    # the broken arguments are sent back as a valid object carrying the raw text
    sent_calls = server.requests[1].messages[1]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in sent_calls[:2]] == [
        {"unparsed_arguments": '{"a": 1, "b":'}, {"unparsed_arguments": "[1, 2]"}]


def test_malformed_arguments_are_logged_with_model_and_arguments(
    server: ScriptedServer, context: LoopContext, caplog: pytest.LogCaptureFixture
) -> None:
    server.add(reply(None, tool_call("add", "{oops")), reply("ok"))
    compile_graph().invoke(start("go"), context=context)
    assert any("Malformed tool args for add from model primary" in r.getMessage()
               and "{oops" in r.getMessage() for r in caplog.records)


def test_tool_exception_becomes_a_tool_error_message(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply(None, tool_call("fail", reason="disk full")), reply("sorry"))
    out = compile_graph().invoke(start("go"), context=context)
    message = tool_messages(out)[0]
    assert message.content == "Tool error: boom: disk full"
    assert message.status == "error"


def test_wrong_argument_types_become_a_tool_error_naming_the_field(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(reply(None, tool_call("add", a="one")), reply("sorry"))
    out = compile_graph().invoke(start("go"), context=context)
    text = str(tool_messages(out)[0].content)
    assert text.startswith("Tool error: ") and "a" in text and "b" in text
    assert CALLS == []


def test_round_limit_ends_with_a_model_answer_with_tools_listed_and_none_chosen(
        server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply(None, tool_call("add", a=1, b=1)), reply(None, tool_call("add", a=2, b=2)),
               reply("Final: 2 and 4."))
    out = compile_graph().invoke(start("loop", max_rounds=2), context=context)
    assert out["messages"][-1].content == "Final: 2 and 4."
    final = server.requests[2]
    assert final.body["tools"] == server.requests[1].body["tools"] and final.body["tool_choice"] == "none"
    assert server.requests[1].body["tool_choice"] == "auto"
    assert final.messages[-1]["role"] == "user" and "answer" in final.messages[-1]["content"]
    assert len(out["messages"]) == 6  # the limit note is sent, not stored


def test_round_limit_falls_back_to_the_original_summary_when_the_final_call_fails(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(reply(None, tool_call("get_weather", city="Oslo")), error(500, "overloaded"))
    out = compile_graph().invoke(start("loop", max_rounds=1), context=context)
    assert out["messages"][-1].content == (
        "Reached the tool iteration limit (1 rounds). Here is what was gathered:\n\n"
        "**get_weather**: Oslo: sunny")
    assert out["answered_by"] == "graphloop"


def test_respond_with_final_false_returns_the_summary_without_asking(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(reply(None, tool_call("add", a=1, b=2)))
    out = compile_graph().invoke(start("loop", max_rounds=1, respond_with_final=False), context=context)
    assert out["messages"][-1].content.endswith("**add**: 3")
    assert len(server.requests) == 1


def test_server_error_names_the_model_not_the_key_and_the_thread_resumes(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(error(503, "try later"), reply("recovered"))
    graph = compile_graph(memory_saver())
    with pytest.raises(ModelUnavailableError) as caught:
        graph.invoke(start("hi"), CONFIG, context=context)
    text = str(caught.value)
    assert text.startswith("every model failed (1); the thread can be resumed from its last "
                           "checkpoint once one is back. 'primary': model 'primary' (scripted at "
                           "http://127.0.0.1:")
    assert "answered HTTP 503: " in text and "try later" in text
    assert SECRET not in text
    out = graph.invoke(None, CONFIG, context=context)  # continue from the last checkpoint
    assert out["messages"][-1].content == "recovered"
    assert [type(m) for m in out["messages"]] == [HumanMessage, AIMessage]


def test_unreachable_server_says_to_check_the_url() -> None:
    dead = ModelConfig(label="gone", api_url="http://127.0.0.1:9/v1", model_name="m", max_retries=0)
    context = LoopContext.create(models=[dead])
    with pytest.raises(ModelCallError, match=r"model 'gone' .* could not be reached: .*check api_url"):
        compile_graph().invoke(start("hi"), context=context)


def test_openwebui_host_type_sends_requests_under_api(server: ScriptedServer) -> None:
    cfg = ModelConfig.coerce({"label": "owui", "api_url": server.root_url, "model_name": "m",
                              "host_type": "openwebui", "max_retries": 0})
    server.add(reply("hi"))
    compile_graph().invoke(start("hi"), context=LoopContext.create(models=cfg))
    assert server.requests[0].path == "/api/chat/completions"


def test_streaming_yields_tokens_and_assembles_tool_calls(streaming_server: ScriptedServer) -> None:
    server = streaming_server
    context = LoopContext.create(models=[server.model_config(label="primary")], tools=TOOLS)
    server.add(reply(None, tool_call("add", a=20, b=22)), reply("The answer is forty-two, exactly."))
    tokens: list[str] = []
    for chunk, meta in compile_graph().stream(start("go"), context=context, stream_mode="messages"):
        if meta["langgraph_node"] == "call_model" and chunk.content:
            tokens.append(str(chunk.content))
    assert all(r.body.get("stream") for r in server.requests)
    assert CALLS == [("add", {"a": 20, "b": 22})]
    assert len(tokens) > 1 and "".join(tokens) == "The answer is forty-two, exactly."


def test_missing_model_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no model configured"):
        compile_graph().invoke(start("hi"), context=LoopContext.create(tools=TOOLS))



def test_a_partial_policy_takes_defaults_for_what_it_leaves_out(server: ScriptedServer, model: ModelConfig) -> None:
    context = LoopContext.create(models=[model], tools=TOOLS, roles={"admin": ["add"], "user": []})
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    out = compile_graph().invoke({"messages": [HumanMessage("sum")], "policy": {"user_role": "admin"}},
                                 context=context)
    assert out["messages"][-1].content == "3"
    assert server.requests[0].tool_names == ["add"]  # the admin role's tools, from the given key
    assert out["policy"]["max_rounds"] == 10 and out["policy"]["tool_list"] is None  # the defaults, pinned


def test_a_policy_with_an_unknown_key_is_refused_by_name(server: ScriptedServer, context: LoopContext) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown keys \['user_roles'\]"):
        compile_graph().invoke({"messages": [HumanMessage("hi")], "policy": {"user_roles": "admin"}},
                               context=context)
