"""What reaches the server: graphloop's model sends the body stock langchain-openai sends.

Messages and tools skip the `openai` client's transform (see `graphloop.nodes.repairs`); these
tests hold that the JSON on the wire, key order included, does not change for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from graphloop.graph.testing import ScriptedServer, reply, tool_call
from graphloop.nodes.repairs import RepairedChatOpenAI

from conftest import TOOLS


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """Permissive: these tests compare the bodies two clients send, not what a server takes."""
    with ScriptedServer() as srv:
        yield srv
        srv.assert_all_used()


HISTORY: list[BaseMessage] = [
    SystemMessage("You are terse."),
    HumanMessage("Weather in Oslo, and 2+3?"),
    AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "c1", "type": "tool_call"},
                              {"name": "add", "args": {"a": 2, "b": 3}, "id": "c2", "type": "tool_call"}]),
    ToolMessage("Sunny, 21°C", tool_call_id="c1", name="get_weather"),
    ToolMessage("5", tool_call_id="c2", name="add", status="error"),
    HumanMessage([{"type": "text", "text": "And tomorrow?"}]),
]


async def send(server: ScriptedServer, cls: type[ChatOpenAI], stream: bool, **options: Any) -> None:
    async with httpx.AsyncClient() as http:
        llm = cls(model="m", base_url=server.url, api_key=SecretStr("none"), max_retries=0,
                  streaming=stream, http_async_client=http, **options)
        await llm.bind_tools(TOOLS).ainvoke(HISTORY)  # pyright: ignore[reportUnknownMemberType]


def sent(server: ScriptedServer, cls: type[ChatOpenAI], stream: bool, **options: Any) -> list[tuple[str, Any]]:
    """The request body `cls` sends for `HISTORY` with the tools bound, as ordered items."""
    server.add(reply(None, tool_call("add", a=1, b=1)))
    asyncio.run(send(server, cls, stream, **options))
    return list(server.requests[-1].body.items())


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_the_body_on_the_wire_is_the_one_stock_langchain_openai_sends(server: ScriptedServer, stream: bool) -> None:
    ours = sent(server, RepairedChatOpenAI, stream)
    stock = sent(server, ChatOpenAI, stream)
    assert ours == stock
    keys = [key for key, _ in ours]
    assert keys[:4] == ["model", "stream", "messages", "tools"] and "extra_body" not in keys
    body = dict(ours)
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert len(body["tools"]) == len(TOOLS)


def test_extra_body_set_on_the_model_still_reaches_the_server(server: ScriptedServer) -> None:
    body = dict(sent(server, RepairedChatOpenAI, False, extra_body={"top_k": 5, "messages": "ignored"}))
    assert body["top_k"] == 5
    assert [m["role"] for m in body["messages"]][-1] == "user"  # langchain's messages win
