"""Endpoints that fail and models that misbehave: one test per fault, through real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from graphloop.graph import (
    LoopContext,
    ModelCallError,
    ModelConfig,
    ModelUnavailableError,
    compile_graph,
    memory_saver,
)
from graphloop.graph.testing import NO_ID, ScriptedServer, error, hang_up, reply, tool_call

from conftest import CALLS, SECRET, TOOLS
from test_loop import start, tool_messages

FAST = {"retry_base_delay": 0.01, "retry_max_delay": 0.05}


@pytest.fixture
def backup() -> Iterator[ScriptedServer]:
    with ScriptedServer(model="backup-model", strict=True) as srv:
        yield srv
        srv.assert_all_used()


def chain(server: ScriptedServer, backup: ScriptedServer, retries: int = 2, **kw: Any) -> LoopContext:
    primary = server.model_config(label="primary", api_key=SECRET, max_retries=retries, **FAST)
    second = backup.model_config(label="backup", api_key="sk-backup", max_retries=0, **FAST)
    return LoopContext.create(models=[primary, second], tools=TOOLS, **kw)


# -- the chain -------------------------------------------------------------------------------


def test_a_5xx_is_retried_on_the_same_model(server: ScriptedServer, backup: ScriptedServer) -> None:
    server.add(error(503), error(500), reply("fine"))
    out = compile_graph().invoke(start("hi"), context=chain(server, backup))
    assert out["messages"][-1].content == "fine" and out["answered_by"] == "primary"
    assert len(server.requests) == 3 and backup.requests == []


@pytest.mark.parametrize("status", [408, 409, 429])
def test_retryable_4xx_statuses_are_retried(server: ScriptedServer, backup: ScriptedServer, status: int) -> None:
    server.add(error(status), reply("fine"))
    out = compile_graph().invoke(start("hi"), context=chain(server, backup))
    assert out["answered_by"] == "primary" and len(server.requests) == 2


def test_retry_after_is_honoured(server: ScriptedServer, backup: ScriptedServer) -> None:
    server.add(error(429, "slow down", retry_after="0.4"), reply("fine"))
    primary = server.model_config(label="primary", max_retries=1, retry_base_delay=0.0,
                                  retry_max_delay=5.0)
    started = time.monotonic()
    compile_graph().invoke(start("hi"), context=LoopContext.create(models=[primary]))
    assert time.monotonic() - started >= 0.4  # the wait asked for, not the 0 s backoff
    del backup


def test_exhausted_retries_fall_back_to_the_next_model(server: ScriptedServer, backup: ScriptedServer) -> None:
    server.add(error(502), error(502), error(502))
    backup.add(reply("from the backup"))
    out = compile_graph().invoke(start("hi"), context=chain(server, backup))
    assert out["messages"][-1].content == "from the backup" and out["answered_by"] == "backup"
    assert len(server.requests) == 3 and backup.requests[0].body["model"] == "backup-model"


def test_a_404_goes_straight_to_the_next_model(server: ScriptedServer, backup: ScriptedServer) -> None:
    server.add(error(404, "model 'gone' not found"))
    backup.add(reply("here"))
    out = compile_graph().invoke(start("hi"), context=chain(server, backup))
    assert out["answered_by"] == "backup" and len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403, 422])
def test_auth_and_other_4xx_stop_with_the_models_label(
    server: ScriptedServer, backup: ScriptedServer, status: int
) -> None:
    server.add(error(status, "invalid api key"))
    with pytest.raises(ModelCallError) as caught:
        compile_graph().invoke(start("hi"), context=chain(server, backup))
    assert not isinstance(caught.value, ModelUnavailableError)
    assert str(caught.value).startswith(f"model 'primary' (scripted at {server.url}) answered HTTP {status}")
    assert SECRET not in str(caught.value) and backup.requests == []


def test_connection_errors_and_timeouts_are_retried_then_fall_back(
    server: ScriptedServer, backup: ScriptedServer
) -> None:
    server.add(hang_up(), reply("late", delay=1.0))
    backup.add(reply("backup answered"))
    primary = server.model_config(label="primary", max_retries=1, timeout=0.3, **FAST)
    second = backup.model_config(label="backup", max_retries=0, **FAST)
    out = compile_graph().invoke(start("hi"), context=LoopContext.create(models=[primary, second]))
    assert out["answered_by"] == "backup" and len(server.requests) == 2


def test_when_every_model_fails_the_error_lists_each_and_the_thread_resumes(
    server: ScriptedServer, backup: ScriptedServer
) -> None:
    server.add(error(500, "primary down"))
    backup.add(error(503, "backup down"), reply("back again"))
    context = chain(server, backup, retries=0)
    graph = compile_graph(memory_saver())
    config: Any = {"configurable": {"thread_id": "all-fail"}}
    with pytest.raises(ModelUnavailableError) as caught:
        graph.invoke(start("hi"), config, context=context)
    text = str(caught.value)
    assert text.startswith("every model failed (2); the thread can be resumed")
    assert "'primary': model 'primary'" in text and "primary down" in text
    assert "'backup': model 'backup'" in text and "backup down" in text
    server.add(error(500, "still down"))
    out = graph.invoke(None, config, context=context)
    assert out["messages"][-1].content == "back again" and out["answered_by"] == "backup"


def test_an_empty_reply_is_asked_again_once_then_counts_as_a_failure(
    server: ScriptedServer, backup: ScriptedServer
) -> None:
    server.add(reply(), reply("second time lucky"))
    out = compile_graph().invoke(start("hi"), context=chain(server, backup))
    assert out["messages"][-1].content == "second time lucky"
    server.add(reply(), reply())
    backup.add(reply("the backup speaks"))
    out = compile_graph().invoke(start("hi"), context=chain(server, backup))
    assert out["answered_by"] == "backup"


# -- bad model output --------------------------------------------------------------------------


def test_missing_empty_and_duplicated_call_ids_get_stable_unique_ids(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(reply(None, tool_call("add", a=1, b=1, id=NO_ID), tool_call("add", a=2, b=2, id=""),
                     tool_call("add", a=3, b=3, id="dup"), tool_call("add", a=4, b=4, id="dup")),
               reply(None, tool_call("add", a=5, b=5, id="dup")),
               reply("done"))
    out = compile_graph().invoke(start("go"), context=context)
    first, second = (m for m in out["messages"] if m.type == "ai" and m.tool_calls)
    ids = [c["id"] for c in first.tool_calls] + [c["id"] for c in second.tool_calls]
    assert len(set(ids)) == 5 and ids[2] == "dup"
    assert ids[0] == f"{first.id}-call-0" and ids[4] == f"{second.id}-call-0"
    assert [m.tool_call_id for m in tool_messages(out)] == ids
    assert [m.content for m in tool_messages(out)] == ["2", "4", "6", "8", "10"]
    last = server.requests[-1].messages
    assert [m["tool_call_id"] for m in last if m["role"] == "tool"] == ids


def test_stray_characters_in_a_tool_name_are_matched_only_when_unambiguous(
    server: ScriptedServer, model: ModelConfig
) -> None:
    def Search(q: str) -> str:  # noqa: N802 - two tools that differ only in case
        """Search (upper)."""
        return "upper"

    def search(q: str) -> str:
        """Search (lower)."""
        return "lower"

    context = LoopContext.create(models=[model], tools=[*TOOLS, Search, search])
    server.add(reply(None, tool_call(' "add" ', a=1, b=2), tool_call("<tool>get_weather</tool>", city="Rome"),
                     tool_call("SEARCH", q="x")),
               reply("done"))
    out = compile_graph().invoke(start("go"), context=context)
    by_call = {m.tool_call_id: m.content for m in tool_messages(out)}
    contents = [by_call[c["id"]] for c in out["messages"][1].tool_calls]
    assert contents[:2] == ["3", "Rome: sunny"]
    assert contents[2] == ("Error: unknown tool 'SEARCH'. Available tools: add, get_weather, "
                           "delete_file, fail, slow_lookup, Search, search.")
    assert [c["name"] for c in out["messages"][1].tool_calls] == ["add", "get_weather", "SEARCH"]


def test_streamed_tool_call_deltas_without_index_are_assembled(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply(None, tool_call("add", a=12345, b=54321), tool_call("get_weather", city="Lisbon"),
                     stream_index=False),
               reply("done"))
    for _ in compile_graph().stream(start("go"), context=context, stream_mode="messages"):
        pass
    assert server.requests[0].body["stream"] is True  # streamed, so the deltas were assembled
    assert CALLS == [("add", {"a": 12345, "b": 54321}), ("get_weather", {"city": "Lisbon"})]


def test_the_same_call_three_turns_in_a_row_is_refused_as_a_loop(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(*[reply(None, tool_call("get_weather", city="Oslo")) for _ in range(3)],
               reply("ok, Oslo is sunny"))
    out = compile_graph().invoke(start("go"), context=context)
    assert CALLS == [("get_weather", {"city": "Oslo"})] * 2
    assert tool_messages(out)[2].content == (
        "Error: you have called 'get_weather' with the same arguments 3 times in a row, so it "
        "was not run again: the result would not change. Use the results you already have, or "
        "call it with different arguments.")
    assert out["messages"][-1].content == "ok, Oslo is sunny"


def test_a_looping_model_still_ends_at_the_round_limit(server: ScriptedServer, context: LoopContext) -> None:
    server.add(*[reply(None, tool_call("get_weather", city="Oslo")) for _ in range(4)], reply("final"))
    out = compile_graph().invoke(start("go", max_rounds=4), context=context)
    assert out["messages"][-1].content == "final" and out["rounds"] == 4


# -- tools -------------------------------------------------------------------------------------


def test_a_tool_timeout_is_an_error_message_and_siblings_finish(server: ScriptedServer, model: ModelConfig) -> None:
    async def slow(x: int) -> str:
        """Takes too long."""
        await asyncio.sleep(5)
        return "never"

    context = LoopContext.create(models=[model], tools=[*TOOLS, slow], tool_timeouts={"slow": 0.2})
    server.add(reply(None, tool_call("slow", x=1), tool_call("fail", reason="bad"), tool_call("add", a=1, b=1)),
               reply("done"))
    started = time.monotonic()
    out = asyncio.run(compile_graph().ainvoke(start("go"), context=context))
    assert time.monotonic() - started < 4
    results = {m.name: m for m in tool_messages(out)}
    assert results["slow"].content == ("Tool error: 'slow' did not finish within 0.2 s and was "
                                       "cancelled; try again later, or with a smaller request.")
    assert results["fail"].content == "Tool error: boom: bad"
    assert results["add"].content == "2"
    assert [results[n].status for n in ("slow", "fail", "add")] == ["error", "error", "success"]


def test_results_that_are_not_strings_are_sent_as_json(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply(None, tool_call("slow_lookup", key="k")), reply("done"))
    compile_graph().invoke(start("go"), context=context)
    sent = server.requests[1].messages[-1]
    assert json.loads(sent["content"]) == {"key": "k", "value": "K"}


def test_requests_after_a_malformed_call_carry_only_valid_json(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply(None, tool_call("add", '{"a": 1,,}')), reply(None, tool_call("add", a=1, b=1)), reply("2"))
    compile_graph().invoke(start("go"), context=context)
    for request in server.requests[1:]:
        for message in request.messages:
            for call in message.get("tool_calls", []):
                assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_each_reply_names_its_model_though_the_label_is_stored_only_when_it_changes(
    server: ScriptedServer, backup: ScriptedServer, tmp_path: Any
) -> None:
    import sqlite3

    from graphloop.graph import ModelReply, Orchestrator, open_saver

    server.add(reply(None, tool_call("add", a=1, b=2)), reply(None, tool_call("add", a=2, b=3)), error(404))
    backup.add(reply("5, from the backup"))
    context = chain(server, backup, retries=0)
    orch = Orchestrator(TOOLS, db=tmp_path / "g.db", models=list(context.models))
    async def collect() -> list[Any]:
        return [event async for event in orch.stream("add twice", tokens=False)]

    events = asyncio.run(collect())
    assert [e.model for e in events if isinstance(e, ModelReply)] == ["primary", "primary", "backup"]
    with sqlite3.connect(tmp_path / "g.db") as conn:
        stored = conn.execute("SELECT count(*) FROM writes WHERE channel = 'answered_by'").fetchone()[0]
    assert stored == 2  # "primary" once, then "backup"
    with open_saver(tmp_path / "g.db") as saver:
        values = compile_graph(checkpointer=saver).get_state({"configurable": {"thread_id": events[-1].result.thread_id}}).values
    assert values["answered_by"] == "backup"
