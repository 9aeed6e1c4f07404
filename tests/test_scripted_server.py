"""The scripted server speaks Chat Completions to the real `openai` client, JSON and SSE."""

from __future__ import annotations

import openai
import pytest

from graphloop.graph.testing import ScriptedServer, error, reply, tool_call


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
