"""The servers people run, as the strict scripted server answers like them (see
`graphloop.graph.strict`): each `host_type` pauses at the gate, resumes in a new OS process and
ends with the model's answer, streamed and not; the request bodies follow the wire rules of
`graphloop.nodes.wire`; each fallback is driven and logged once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from graphloop.graph import (
    ConfigurationError,
    LoopContext,
    ModelCallError,
    ModelConfig,
    Orchestrator,
    Token,
    ToolResult,
    compile_graph,
)
from graphloop.graph.settings import load_settings
from graphloop.graph.testing import ScriptedReply, ScriptedServer, error, reply, tool_call
from graphloop.nodes.models import HostType
from graphloop.nodes.wire import lesson_from

from conftest import CALLS, TOOLS
from test_loop import start

CHILD = Path(__file__).parent / "host_child.py"
KEY = "sk-host-0123456789"
HOSTS: list[HostType] = ["openai", "openwebui", "litellm", "llamacpp", "ollama", "vllm"]
AS_SERVED: dict[HostType, dict[str, Any]] = {"llamacpp": {"system_breaks_tools": True},
                                             "litellm": {"empty_stream": "empty_reply"}}
"""What the strict server adds per host: llama-cpp-python's chat format names a tool when sent a
system message; LiteLLM streams an empty reply where llama-cpp-python streams no chunk."""


def api_url(server: ScriptedServer, host_type: HostType) -> str:
    # Open WebUI is configured with its root; its OpenAI API lives under /api
    return server.url.removesuffix("/v1") if host_type == "openwebui" else server.url


async def run_to_gate(orch: Orchestrator, stream: bool) -> tuple[str, list[str]]:
    seen: list[str] = []
    thread_id = ""
    async for event in orch.stream("add 2 and 3, then delete /tmp/x", tokens=stream):
        if isinstance(event, ToolResult):
            seen.append(event.name)
        thread_id = getattr(getattr(event, "result", None), "thread_id", thread_id)
    return thread_id, seen


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("host_type", HOSTS)
def test_each_kind_of_server_pauses_resumes_in_a_new_process_and_answers(
        host_type: HostType, stream: bool, db: Path) -> None:
    with ScriptedServer(strict=True, api_key=KEY, **AS_SERVED.get(host_type, {})) as server:
        server.add(reply(None, tool_call("add", a=2, b=3), tool_call("delete_file", path="/tmp/x")),
                   reply("May I delete /tmp/x?"), reply("Deleted /tmp/x; 2 + 3 = 5."))
        model = {"label": "m", "api_url": api_url(server, host_type), "model_name": "scripted",
                 "host_type": host_type, "api_key": KEY, "max_retries": 0}
        orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
        thread_id, ran = asyncio.run(run_to_gate(orch, stream))
        assert ran == ["add"] and CALLS == [("add", {"a": 2, "b": 3})]
        done = subprocess.run([sys.executable, str(CHILD), str(db), thread_id, model["api_url"], host_type,
                               "1" if stream else "0"], capture_output=True, text=True, timeout=120,
                              cwd=CHILD.parent, env={**os.environ, "SCRIPTED_KEY": KEY})
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout.strip().splitlines()[-1]) == "Deleted /tmp/x; 2 + 3 = 5."
        server.assert_all_used()
    prefix = "/api" if host_type == "openwebui" else "/v1"
    assert {r.path for r in server.requests} == {f"{prefix}/chat/completions"}
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
    refused = [r.kind for r in server.refusals]
    # streamed, the first tool round of each process streams nothing (as llama-cpp-python does) or
    # an empty reply (LiteLLM), is asked again at once without streaming, and that model is not
    # streamed with tools again; llamacpp sends no system message, so no tool is named as text
    empty = "empty_reply" if host_type == "litellm" else "empty_stream"
    assert refused == ([empty] * 2 if stream else [])


def bodies(server: ScriptedServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests]


def edited_run(server: ScriptedServer, db: Path, tool_instruction: str) -> list[dict[str, Any]]:
    """The bodies of a tool round, the question, the round after an edit, and the final answer."""
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, tool_instruction=tool_instruction,
                        max_rounds=2, models=[server.model_config(label="m", max_output_tokens=256)])
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I?"),
               reply(None, tool_call("add", a=1, b=1)), reply("Two."))
    paused = orch.run_sync("delete /tmp/x")
    orch.resume_sync(paused.thread_id, decisions=[{"type": "edit", "edited_action": {
        "name": "delete_file", "args": {"path": "/tmp/y"}}}])
    return bodies(server)


def test_the_request_bodies_follow_the_original_loops_wire_rules(server: ScriptedServer, db: Path) -> None:
    tool_round, question, after_edit, final = edited_run(server, db, "")
    names = [t["function"]["name"] for t in tool_round["tools"]]
    for body, choice in ((tool_round, "auto"), (question, "none"), (after_edit, "auto"), (final, "none")):
        assert body["tool_choice"] == choice and [t["function"]["name"] for t in body["tools"]] == names
        assert body["max_tokens"] == 256 and "max_completion_tokens" not in body
        assert all(m["role"] != "system" for m in body["messages"])  # no system text, no system message
    assert tool_round["messages"] == [{"role": "user", "content": "delete /tmp/x"}]
    [call_message] = [m for m in after_edit["messages"] if m["role"] == "assistant"]
    assert call_message["content"] == "" and call_message["tool_calls"][0]["function"]["arguments"] == (
        '{"path": "/tmp/y"}')  # as edited
    assert final["messages"][-1]["role"] == "user" and server.refusals == []


SNAPSHOT = Path(__file__).parent / "snapshots" / "request_bodies.json"


def normalised(value: Any, ids: dict[str, str]) -> Any:
    """`value` with each tool-call id (an `id` or `tool_call_id` text) renamed `call_<n>`, n
    counting distinct ids in order of first appearance: the ids are the server's, not graphloop's."""
    if isinstance(value, dict):
        return {k: ids.setdefault(v, f"call_{len(ids) + 1}") if k in ("id", "tool_call_id") and isinstance(v, str)
                else normalised(v, ids) for k, v in cast(dict[str, Any], value).items()}
    if isinstance(value, list):
        return [normalised(v, ids) for v in cast(list[Any], value)]
    return value


def test_each_whole_request_body_matches_its_snapshot(server: ScriptedServer, db: Path) -> None:
    """Tool round, question, round after an edit, final answer: each body as the server decoded
    it, written back as JSON text with its key order kept (indent 2) and compared as text with
    tests/snapshots/request_bodies.json, so a field added, dropped, moved or changed fails. Only
    the tool-call ids are normalised (`normalised`). After a deliberate change, rerun with
    GRAPHLOOP_UPDATE_SNAPSHOTS=1 to rewrite the file, and review its diff."""
    kinds = ("tool_round", "question", "after_edit", "final_answer")
    sent = dict(zip(kinds, edited_run(server, db, "Use the tools."), strict=True))
    text = json.dumps(normalised(sent, {}), indent=2) + "\n"
    if os.environ.get("GRAPHLOOP_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()


@pytest.mark.parametrize(("refusal", "learned", "absent"), [
    ("messages[1].content: Input should be a valid string", "empty content", "content"),
    ("tool_choice is not supported by this server", "tool_choice", "tool_choice"),
])
def test_a_server_refusing_one_wire_rule_gets_the_other_form_once_and_for_good(
        refusal: str, learned: str, absent: str, db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer(strict=False) as server:  # as a server would that refuses what others take
        model = server.model_config(label="picky")
        orch = Orchestrator(TOOLS, db=db, models=[model], tool_instruction="")
        server.add(reply(None, tool_call("add", a=1, b=2)), error(500, refusal), reply("3."),
                   reply(None, tool_call("add", a=2, b=2)), reply("4."))
        with caplog.at_level(logging.WARNING, logger="graphloop.nodes.wire"):
            assert orch.run_sync("1 + 2").response == "3."
            assert orch.run_sync("2 + 2").response == "4."
        server.assert_all_used()
    retried, later = server.requests[2].body, server.requests[4].body
    assistant = [m for m in retried["messages"] if m["role"] == "assistant"] if absent == "content" else [retried]
    assert all(absent not in m for m in assistant)
    assert absent not in ([m for m in later["messages"] if m["role"] == "assistant"][0] if absent == "content" else later)
    [logged] = [r.getMessage() for r in caplog.records if r.name == "graphloop.nodes.wire"]
    assert learned in logged and "'picky'" in logged


@pytest.mark.parametrize("opted_in", [True, False])
def test_a_call_written_as_text_runs_only_where_the_model_is_marked_for_it(
        opted_in: bool, server: ScriptedServer, db: Path) -> None:
    written = '```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```'
    model = server.model_config(label="small", text_tool_calls=opted_in)
    orch = Orchestrator(TOOLS, db=db, models=[model])
    server.add(reply(written), *([reply("1 + 2 = 3.")] if opted_in else []))
    result = orch.run_sync("1 + 2?")
    assert result.response == ("1 + 2 = 3." if opted_in else written)
    assert CALLS == ([("add", {"a": 1, "b": 2})] if opted_in else [])
    assert [c["status"] for c in orch.approvals.tool_calls(result.thread_id)] == (["success"] if opted_in else [])


def test_per_model_settings_reach_the_wire(server: ScriptedServer, db: Path, tmp_path: Path) -> None:
    (tmp_path / "graphloop.toml").write_text(
        f'[[models]]\nlabel = "w"\napi_url = "{server.url}"\nmodel_name = "scripted"\nmax_retries = 0\n'
        'tool_choice = ""\nstream = false\nextra_body = {top_k = 20}\n'
        'extra_headers = {"X-Title" = "graphloop-tests"}\n')
    [model] = load_settings(tmp_path / "graphloop.toml").models
    assert model.tool_choice is None and "X-Title" not in repr(model)
    orch = Orchestrator(TOOLS, db=db, models=[model])
    server.add(reply("ok"))
    assert orch.run_sync("hi").response == "ok"
    [request] = server.requests
    assert "tool_choice" not in request.body and request.body["top_k"] == 20
    assert request.headers["x-title"] == "graphloop-tests" and request.body["stream"] is False


def test_a_model_that_streams_nothing_with_tools_is_asked_without_streaming_once_and_for_good(
        server: ScriptedServer, db: Path, caplog: pytest.LogCaptureFixture) -> None:
    orch = Orchestrator(TOOLS, db=db, models=[server.model_config(label="llama")])
    server.add(reply(None, tool_call("add", a=1, b=1)), reply(None, tool_call("add", a=2, b=2)), reply("Done."))

    async def streamed() -> list[str]:
        return [e.text async for e in orch.stream("add twice") if isinstance(e, Token)]

    with caplog.at_level(logging.WARNING):
        tokens = asyncio.run(streamed())
    assert [r.kind for r in server.refusals] == ["empty_stream"]  # the first round only
    assert [r.body.get("stream") for r in server.requests] == [True, False, False, False]
    assert [r.getMessage() for r in caplog.records if r.name == "graphloop.nodes.wire"] == [
        "model 'llama' (scripted) streamed nothing with tools offered; asking it without streaming, for the "
        "rest of this process"]
    assert tokens == [] and CALLS == [("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2})]


@pytest.mark.parametrize(("status", "message", "sent_empty", "choice", "lesson"), [
    (500, "messages[2].content: Input should be a valid string", True, "auto", "omit_content"),
    (500, "'dict object' has no attribute 'content'", True, "auto", "omit_content"),
    (400, "messages[2].content must be a string; tool_choice is fine", True, "auto", "omit_content"),
    (400, "Violated content safety policy", True, "auto", None),
    (401, "Check the content of your Authorization header", True, "auto", None),
    (500, "messages[2].content: Input should be a valid string", False, "auto", None),
    (400, '"auto" tool choice requires --enable-auto-tool-choice', False, "auto", "no_tool_choice"),
    (400, "tool_choice 'none' is not supported", False, "none", "no_tool_choice_none"),
    (400, "tool_choice is not supported", False, None, None),
])
def test_only_a_refusal_naming_what_was_sent_teaches_the_other_form(
        status: int, message: str, sent_empty: bool, choice: str | None, lesson: str | None) -> None:
    assert lesson_from(status, message, sent_empty_content=sent_empty, choice=choice) == lesson


def refuses_empty_content(body: dict[str, Any]) -> ScriptedReply:
    """A server that takes no `content: ""` (answers a call, then an answer, per conversation)."""
    messages = body["messages"]
    if any(m["role"] == "assistant" and m.get("content") == "" for m in messages):
        return error(400, "messages[2].content: Input should be a valid string")
    if messages[-1]["role"] == "tool":
        return reply("done")
    return reply(None, tool_call("add", a=1, b=1))


def test_runs_in_flight_when_a_form_is_learned_are_asked_again_in_it(db: Path) -> None:
    with ScriptedServer([refuses_empty_content] * 12) as server:
        orch = Orchestrator(TOOLS, db=db, models=[server.model_config(label="picky")], tool_instruction="")

        async def four() -> list[str]:
            results = await asyncio.gather(*(orch.run(f"task {i}") for i in range(4)))
            return [r.response for r in results]

        assert asyncio.run(four()) == ["done"] * 4


def test_a_final_answer_that_calls_a_tool_despite_none_keeps_only_its_text(server: ScriptedServer) -> None:
    context = LoopContext.create(models=[server.model_config(label="m")], tools=TOOLS)
    server.add(reply(None, tool_call("add", a=1, b=1)), reply("Two, and one more:", tool_call("add", a=2, b=2)))
    out = compile_graph().invoke(start("go", max_rounds=1), context=context)
    assert out["messages"][-1].content == "Two, and one more:" and out["messages"][-1].tool_calls == []
    assert CALLS == [("add", {"a": 1, "b": 1})]


def test_a_secret_header_the_server_echoes_is_not_in_the_error(db: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY", "gw-secret-0123456789")
    with ScriptedServer([error(403, "forbidden for X-Api-Key gw-secret-0123456789")], strict=True) as server:
        (tmp_path / "graphloop.toml").write_text(
            f'[[models]]\nlabel = "gw"\napi_url = "{server.url}"\nmodel_name = "scripted"\nmax_retries = 0\n'
            'extra_headers = {"X-Api-Key" = "${GATEWAY_KEY}"}\n')
        [model] = load_settings(tmp_path / "graphloop.toml").models
        with pytest.raises(ModelCallError) as failed:
            Orchestrator(TOOLS, db=db, models=[model]).run_sync("hi")
    assert server.requests[0].headers["x-api-key"] == "gw-secret-0123456789"
    assert "gw-secret" not in str(failed.value) and "gw-secret" not in repr(model)


@pytest.mark.parametrize(("setting", "message"), [
    ({"text_tool_calls": "false"}, "text_tool_calls='false' must be true or false"),
    ({"max_output_tokens": -5}, "max_output_tokens=-5 must be a positive number"),
    ({"extra_headers": {"X": 1}}, "extra_headers must map header names to text values"),
    ({"extra_body": {"model": "other"}}, "extra_body may not set ['model']"),
    ({"tool_choice": "any"}, "tool_choice='any' is not one of"),
])
def test_a_per_model_setting_of_the_wrong_kind_is_refused_naming_it(setting: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        ModelConfig.coerce({"label": "m", "api_url": "http://127.0.0.1:1/v1", "model_name": "m", **setting})


def wire_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "graphloop.nodes.wire"]


def test_a_server_refusing_tool_choice_none_is_asked_without_tools_once_and_for_good(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer(strict=True, refuses_tool_choice_none=True) as server:
        orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[server.model_config(label="m")])
        server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I?"), reply("Deleted."),
                   reply(None, tool_call("delete_file", path="/tmp/y")), reply("May I?"))
        with caplog.at_level(logging.WARNING, logger="graphloop.nodes.wire"):
            paused = orch.run_sync("delete /tmp/x")
            assert orch.resume_sync(paused.thread_id, confirmed=True).response == "Deleted."
            assert orch.run_sync("delete /tmp/y").checkpoint is not None
        server.assert_all_used()
    assert [(r.request, r.kind) for r in server.refusals] == [(1, "tool_choice_none_refused")]
    choices = [(r.body.get("tool_choice"), "tools" in r.body) for r in server.requests]
    assert choices == [("auto", True), ("none", True), (None, False), ("auto", True), ("auto", True), (None, False)]
    assert len(wire_log(caplog)) == 1 and CALLS == [("delete_file", {"path": "/tmp/x"})]


def test_a_model_naming_a_tool_when_sent_a_system_message_gets_its_text_in_the_user_message_once_and_for_good(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer(strict=True, system_breaks_tools=True) as server:  # llama-cpp-python, chatml-function-calling
        orch = Orchestrator(TOOLS, db=db, models=[server.model_config(label="chatml")], tool_instruction="Use tools.")
        server.add(reply(None, tool_call("add", a=1, b=2)), reply("3."), reply(None, tool_call("add", a=2, b=2)),
                   reply("4."))
        with caplog.at_level(logging.WARNING, logger="graphloop.nodes.wire"):
            assert orch.run_sync("1 + 2").response == "3."
            assert orch.run_sync("2 + 2").response == "4."
        server.assert_all_used()
    assert [(r.request, r.kind) for r in server.refusals] == [(0, "system_breaks_tools")] and len(server.requests) == 5
    assert server.requests[0].messages[0] == {"role": "system", "content": "Use tools."}
    assert [r.messages[0] for r in server.requests[1:]] == [{"role": "user", "content": "Use tools.\n\n1 + 2"}] * 2 + [
        {"role": "user", "content": "Use tools.\n\n2 + 2"}] * 2
    assert "functions.add" not in json.dumps([r.body for r in server.requests[1:]])  # not in the history
    assert CALLS == [("add", {"a": 1, "b": 2}), ("add", {"a": 2, "b": 2})]
    [logged] = wire_log(caplog)
    assert "'chatml'" in logged and "putting the system text into the first user message" in logged


def test_a_llamacpp_model_never_sends_a_system_message(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer(strict=True, system_breaks_tools=True) as server:
        model = server.model_config(label="llama", host_type="llamacpp")
        orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model], tool_instruction="Use tools.")
        server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I?"), reply("Deleted."))
        with caplog.at_level(logging.WARNING, logger="graphloop.nodes.wire"):
            paused = orch.run_sync("delete /tmp/x")
            assert orch.resume_sync(paused.thread_id, confirmed=True).response == "Deleted."
        server.assert_all_used()
    assert all(m["role"] != "system" for r in server.requests for m in r.messages) and len(server.requests) == 3
    assert server.requests[0].messages == [{"role": "user", "content": "Use tools.\n\ndelete /tmp/x"}]
    assert server.refusals == [] and wire_log(caplog) == []


def test_an_empty_streamed_reply_is_asked_again_without_streaming_and_the_run_goes_on(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer(strict=True, empty_stream="empty_reply") as server:  # as LiteLLM answers
        orch = Orchestrator(TOOLS, db=db, models=[server.model_config(label="proxy")])
        server.add(reply(None, tool_call("add", a=1, b=1)), reply(None, tool_call("add", a=2, b=2)), reply("Done."))

        async def streamed() -> list[str]:
            return [e.text async for e in orch.stream("add twice") if isinstance(e, Token)]

        with caplog.at_level(logging.WARNING):
            assert asyncio.run(streamed()) == []  # the empty reply had no token, and later rounds are not streamed
        server.assert_all_used()
    assert [(r.request, r.kind) for r in server.refusals] == [(0, "empty_reply")]
    assert [r.body.get("stream") for r in server.requests] == [True, False, False, False]
    assert CALLS == [("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2})] and len(wire_log(caplog)) == 1


def test_max_output_tokens_and_text_tool_calls_from_graphloop_toml_take_effect(
        server: ScriptedServer, db: Path, tmp_path: Path) -> None:
    (tmp_path / "graphloop.toml").write_text(
        f'[[models]]\nlabel = "small"\napi_url = "{server.url}"\nmodel_name = "scripted"\nmax_retries = 0\n'
        'max_output_tokens = 512\ntext_tool_calls = true\n')
    [model] = load_settings(tmp_path / "graphloop.toml").models
    server.add(reply('{"name": "add", "arguments": {"a": 1, "b": 2}}'), reply("3."))
    assert Orchestrator(TOOLS, db=db, models=[model]).run_sync("1 + 2?").response == "3."
    assert CALLS == [("add", {"a": 1, "b": 2})]
    assert [r.body["max_tokens"] for r in server.requests] == [512, 512]


def test_a_call_written_as_text_to_a_gated_tool_waits_at_the_gate(server: ScriptedServer, db: Path) -> None:
    model = server.model_config(label="small", text_tool_calls=True)
    orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=db, models=[model])
    server.add(reply('{"name": "delete_file", "arguments": {"path": "/tmp/x"}}'), reply("May I delete /tmp/x?"))
    paused = orch.run_sync("delete /tmp/x")
    assert paused.checkpoint is not None and CALLS == []
    [action] = paused.checkpoint.request["action_requests"]
    assert (action["name"], action["args"]) == ("delete_file", {"path": "/tmp/x"})
    server.add(reply("Deleted."))
    assert orch.resume_sync(paused.thread_id, confirmed=True).response == "Deleted."
    assert CALLS == [("delete_file", {"path": "/tmp/x"})]
