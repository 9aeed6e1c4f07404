"""The scripted server speaks Chat Completions to the real `openai` client, JSON and SSE."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from graphloop.graph.testing import TOOLS_IGNORED_TEXT, Refusal, ScriptedServer, error, reply, tool_call


def client(server: ScriptedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="sk-x", max_retries=0)


def test_json_reply_carries_text_and_tool_calls() -> None:
    with ScriptedServer([reply("hi", tool_call("add", a=1, b=2, id="c1"))]) as server:
        completion = client(server).chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "x"}])
        server.assert_all_used()
    choice = completion.choices[0]
    assert choice.message.content == "hi" and choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == ("c1", "add", '{"a": 1, "b": 2}')  # type: ignore[union-attr]
    assert server.requests[0].body["messages"] == [{"role": "user", "content": "x"}]


def test_sse_stream_splits_text_and_tool_arguments_into_chunks() -> None:
    with ScriptedServer([reply("Hello streaming world", tool_call("add", a=123456, b=654321))]) as server:
        chunks = list(client(server).chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "x"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    args = "".join(tc.function.arguments or "" for c in chunks if c.choices
                   for tc in c.choices[0].delta.tool_calls or [] if tc.function)
    assert text == "Hello streaming world"
    assert args == '{"a": 123456, "b": 654321}'
    assert len(chunks) > 5 and chunks[-1].choices[0].finish_reason == "tool_calls"


def test_error_reply_is_an_http_error_with_an_openai_error_body() -> None:
    with ScriptedServer([error(429, "slow down")]) as server:
        with pytest.raises(openai.RateLimitError, match="slow down"):
            client(server).chat.completions.create(model="scripted", messages=[])


def test_assert_all_used_reports_leftover_and_unexpected_requests() -> None:
    with ScriptedServer([reply("a"), reply("b")]) as server:
        client(server).chat.completions.create(model="scripted", messages=[])
        with pytest.raises(AssertionError, match=r"1 scripted repl\(ies\) never requested"):
            server.assert_all_used()
        client(server).chat.completions.create(model="scripted", messages=[])
        with pytest.raises(openai.InternalServerError, match="no reply left"):
            client(server).chat.completions.create(model="scripted", messages=[])
        with pytest.raises(AssertionError, match=r"request\(s\) #\[2\] arrived with no reply left"):
            server.assert_all_used()


def test_reply_functions_see_the_request_body() -> None:
    with ScriptedServer([lambda body: reply(f"you said {body['messages'][-1]['content']}")]) as server:
        completion = client(server).chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "ping"}])
    assert completion.choices[0].message.content == "you said ping"


# strict mode: answers like llama-cpp-python, Open WebUI and LiteLLM (shared/reference/real-servers.md)

TOOLS: list[dict[str, Any]] = [{"type": "function", "function": {
    "name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}]
USER = {"role": "user", "content": "add 1"}


def tool_round(content: object = "", **extra: Any) -> list[dict[str, Any]]:
    """user, assistant tool call (with `content` unless `extra` says otherwise), tool result."""
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    assistant = {"role": "assistant", "content": content, "tool_calls": [call]} | extra
    return [USER, assistant, {"role": "tool", "tool_call_id": "c1", "content": "1"}]


def test_strict_answers_500_to_a_tool_call_message_with_null_content() -> None:
    with ScriptedServer([reply("done")], strict=True) as server:
        with pytest.raises(openai.InternalServerError,
                           match=r"messages\[1\]\.content: Input should be a valid string"):
            client(server).chat.completions.create(
                model="scripted", messages=tool_round(None), tools=TOOLS, tool_choice="auto")
    assert server.refusals == [Refusal(0, "content_not_a_string", 500,
                                       "messages[1].content: Input should be a valid string")]
    assert server.remaining == 1, "a refused request must not consume the scripted reply"


def test_strict_answers_500_to_a_tool_call_message_without_a_content_key() -> None:
    messages = tool_round()
    del messages[1]["content"]
    with ScriptedServer([reply("done")], strict=True) as server:
        with pytest.raises(openai.InternalServerError,
                           match=r"messages\[1\]\.content: Field required.*no attribute 'content'"):
            client(server).chat.completions.create(
                model="scripted", messages=messages, tools=TOOLS, tool_choice="auto")
    assert [(r.request, r.kind, r.status) for r in server.refusals] == [(0, "content_not_a_string", 500)]


def test_strict_accepts_an_empty_string_as_a_tool_call_messages_content() -> None:
    with ScriptedServer([reply("done")], strict=True) as server:
        completion = client(server).chat.completions.create(
            model="scripted", messages=tool_round(""), tools=TOOLS, tool_choice="auto")
        server.assert_all_used()
    assert completion.choices[0].message.content == "done"
    assert server.refusals == []


def test_strict_returns_tool_calls_when_tool_choice_is_auto() -> None:
    with ScriptedServer([reply(None, tool_call("add", a=1, id="c9"))], strict=True) as server:
        completion = client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="auto")
    [call] = completion.choices[0].message.tool_calls or []
    assert call.id == "c9" and completion.choices[0].finish_reason == "tool_calls"
    assert server.refusals == []


def test_strict_ignores_tools_sent_without_tool_choice_and_answers_the_replys_text() -> None:
    with ScriptedServer([reply("I would add.", tool_call("add", a=1))], strict=True) as server:
        completion = client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS)
        server.assert_all_used()
    choice = completion.choices[0]
    assert (choice.message.content, choice.message.tool_calls, choice.finish_reason) == (
        "I would add.", None, "stop")
    assert [(r.request, r.kind, r.status) for r in server.refusals] == [(0, "tools_ignored", 200)]


def test_strict_answers_a_fixed_text_when_ignored_tools_leave_a_reply_without_text() -> None:
    with ScriptedServer([reply(None, tool_call("add", a=1))], strict=True) as server:
        completion = client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS)
    assert completion.choices[0].message.content == TOOLS_IGNORED_TEXT == "I cannot call tools."
    assert completion.choices[0].message.tool_calls is None


def test_strict_streams_no_chunk_for_tools_with_tool_choice_auto_and_keeps_the_reply_for_the_retry() -> None:
    with ScriptedServer([reply(None, tool_call("add", a=1))], strict=True) as server:
        chunks = list(client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="auto", stream=True))
        assert server.remaining == 1
        retry = client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="auto")
        server.assert_all_used()
    assert chunks == []
    assert retry.choices[0].message.tool_calls is not None
    assert [(r.request, r.kind, r.status) for r in server.refusals] == [(0, "empty_stream", 200)]


def test_strict_empty_stream_is_no_generations_for_langchain_openai() -> None:
    from langchain_openai import ChatOpenAI

    with ScriptedServer([reply(None, tool_call("add", a=1))], strict=True) as server:
        model = ChatOpenAI(base_url=server.url, api_key="sk-x", model="scripted",
                           max_retries=0, streaming=True).bind_tools(TOOLS, tool_choice="auto")
        with pytest.raises(ValueError, match="No generations found in stream"):
            model.invoke("add 1")


def test_strict_streams_text_when_tool_choice_is_none() -> None:
    with ScriptedServer([reply("no tools today")], strict=True) as server:
        chunks = list(client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="none", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "no tools today"
    assert server.refusals == []


def test_strict_answers_400_to_an_empty_system_message() -> None:
    with ScriptedServer([reply("hi")], strict=True) as server:
        with pytest.raises(openai.BadRequestError, match=r"messages\[0\]: empty system message") as raised:
            client(server).chat.completions.create(
                model="scripted", messages=[{"role": "system", "content": ""}, USER])
    assert raised.value.param == "messages[0].content"
    assert [(r.kind, r.status) for r in server.refusals] == [("empty_system_message", 400)]
    assert server.remaining == 1


def test_strict_answers_400_naming_an_unknown_tool_choice() -> None:
    with ScriptedServer([reply("hi")], strict=True) as server:
        with pytest.raises(openai.BadRequestError, match=r"'tool_choice': 'any'"):
            client(server).chat.completions.create(
                model="scripted", messages=[USER], tools=TOOLS, tool_choice="any")
    assert [(r.kind, r.status) for r in server.refusals] == [("unknown_tool_choice", 400)]


def test_strict_accepts_an_object_tool_choice() -> None:
    with ScriptedServer([reply(None, tool_call("add", a=1))], strict=True) as server:
        completion = client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "add"}})
    assert completion.choices[0].finish_reason == "tool_calls" and server.refusals == []


def test_strict_answers_500_to_required_tool_choice_with_a_system_message() -> None:
    messages = [{"role": "system", "content": "Be brief."}, USER]
    with ScriptedServer([reply(None, tool_call("add", a=1))], strict=True) as server:
        with pytest.raises(openai.InternalServerError, match="tool_choice 'required' with a system message"):
            client(server).chat.completions.create(
                model="scripted", messages=messages, tools=TOOLS, tool_choice="required")
        completion = client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="required")
    assert completion.choices[0].finish_reason == "tool_calls"
    assert [(r.request, r.kind, r.status) for r in server.refusals] == [(0, "required_with_system", 500)]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "sk-right"}])
def test_server_with_api_key_answers_401_without_the_bearer_key(headers: dict[str, str]) -> None:
    with ScriptedServer([reply("hi")], api_key="sk-right") as server:
        response = httpx.post(f"{server.url}/chat/completions", headers=headers,
                              json={"model": "scripted", "messages": [USER]})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "sk-" not in response.text, "the error must not echo a key"
    assert [(r.kind, r.status) for r in server.refusals] == [("unauthorized", 401)]
    assert server.remaining == 1 and len(server.requests) == 1


def test_server_with_api_key_answers_the_openai_client_that_sends_it() -> None:
    with ScriptedServer([reply("hi"), reply("hi")], strict=True, api_key="sk-right") as server:
        ok = openai.OpenAI(base_url=server.url, api_key="sk-right", max_retries=0).chat.completions.create(
            model="scripted", messages=[USER])
        with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
            client(server).chat.completions.create(model="scripted", messages=[USER])
    assert ok.choices[0].message.content == "hi"
    assert server.requests[0].headers["authorization"] == "Bearer sk-right"
    assert server.model_config().api_key == "sk-right"


def test_permissive_default_accepts_everything_strict_refuses() -> None:
    script = [reply("a", tool_call("add", a=1)), reply("b"), reply("c")]
    with ScriptedServer(script) as server:
        no_choice = client(server).chat.completions.create(
            model="scripted", messages=[{"role": "system", "content": ""}, *tool_round(None)],
            tools=TOOLS)
        odd_choice = client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="any")
        streamed = list(client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="auto", stream=True))
        server.assert_all_used()
    assert no_choice.choices[0].message.tool_calls and odd_choice.choices[0].message.content == "b"
    assert streamed and server.refusals == []


def test_assert_all_used_names_the_refusal_behind_an_unused_reply() -> None:
    with ScriptedServer([reply("hi")], strict=True) as server:
        with pytest.raises(openai.BadRequestError):
            client(server).chat.completions.create(
                model="scripted", messages=[{"role": "system", "content": ""}, USER])
        with pytest.raises(AssertionError, match=r"1 scripted repl\(ies\) never requested; "
                                                 r"refused: #0 empty_system_message \(400\)"):
            server.assert_all_used()


def test_json_reply_and_last_streamed_chunk_carry_usage() -> None:
    with ScriptedServer([reply("hi"), reply("hi")], strict=True) as server:
        completion = client(server).chat.completions.create(model="scripted", messages=[USER])
        chunks = list(client(server).chat.completions.create(
            model="scripted", messages=[USER], stream=True,
            stream_options={"include_usage": True}))
    assert completion.usage is not None
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_strict_streams_tools_as_openai_does_when_asked() -> None:
    with ScriptedServer([reply("streamed", tool_call("add", a=1))], strict=True, streams_tools=True) as server:
        chunks = list(client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="auto", stream=True))
    assert chunks and server.refusals == []


@pytest.mark.parametrize("system", ["Be brief.", ""])
def test_strict_with_system_breaks_tools_names_the_first_tool_and_keeps_the_reply_for_the_retry(system: str) -> None:
    with ScriptedServer([reply(None, tool_call("add", a=1))], strict=True, system_breaks_tools=True) as server:
        named = client(server).chat.completions.create(
            model="scripted", messages=[{"role": "system", "content": system}, USER], tools=TOOLS,
            tool_choice="auto")
        assert server.remaining == 1
        retry = client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="auto")
        server.assert_all_used()
    choice = named.choices[0]
    assert (choice.message.content, choice.message.tool_calls, choice.finish_reason) == ("functions.add:", None, "stop")
    assert retry.choices[0].message.tool_calls is not None
    assert [(r.request, r.kind, r.status) for r in server.refusals] == [(0, "system_breaks_tools", 200)]


def test_strict_with_system_breaks_tools_answers_tool_choice_none_as_asked() -> None:
    with ScriptedServer([reply("plain text")], strict=True, system_breaks_tools=True) as server:
        completion = client(server).chat.completions.create(
            model="scripted", messages=[{"role": "system", "content": "Be brief."}, USER], tools=TOOLS,
            tool_choice="none")
    assert completion.choices[0].message.content == "plain text" and server.refusals == []


def test_strict_with_empty_reply_streams_chunks_without_text_or_calls_and_keeps_the_reply() -> None:
    with ScriptedServer([reply(None, tool_call("add", a=1))], strict=True, empty_stream="empty_reply") as server:
        chunks = list(client(server).chat.completions.create(
            model="scripted", messages=[USER], tools=TOOLS, tool_choice="auto", stream=True))
        assert server.remaining == 1
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert chunks and not any(d.content or d.tool_calls for d in deltas)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [(r.request, r.kind, r.status) for r in server.refusals] == [(0, "empty_reply", 200)]


def test_strict_refusing_tool_choice_none_answers_400_naming_it() -> None:
    with ScriptedServer([reply("hi")], strict=True, refuses_tool_choice_none=True) as server:
        with pytest.raises(openai.BadRequestError, match="tool_choice 'none' is not supported") as raised:
            client(server).chat.completions.create(model="scripted", messages=[USER], tools=TOOLS, tool_choice="none")
    assert raised.value.param == "tool_choice" and server.remaining == 1
    assert [(r.kind, r.status) for r in server.refusals] == [("tool_choice_none_refused", 400)]


def test_an_unknown_empty_stream_kind_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"empty_stream='nothing': expected 'no_chunk' or 'empty_reply'"):
        ScriptedServer(strict=True, empty_stream="nothing")  # type: ignore[arg-type]  # the wrong value on purpose
