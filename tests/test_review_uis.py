"""What LangChain's review UIs send, replayed against a real `langgraph dev` serving graphloop.

Agent Chat UI and Agent Inbox drive a served graph through the LangGraph API; each test sends
one of their request sequences, as they send it, with langgraph-sdk, then checks the thread,
the model's next request and the audit in the server's ledger.

One `langgraph dev` and one scripted model server serve the whole module (the dev server takes
seconds to start). Each test uses its own thread, scripts its own replies through `script`,
and fails at teardown if one of them was not used. The tools run in the server process, so
their effects are checked through the audit, not `conftest.CALLS`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from langgraph_sdk.schema import Command

from graphloop.graph import Approvals
from graphloop.graph.testing import (
    RecordedRequest,
    ScriptedReply,
    ScriptedServer,
    ScriptedToolCall,
    reply,
    tool_call,
)

from test_langgraph_dev import ROOT, free_port, wait_until_up

GRAPH = "graphloop"
GATE = "interrupt_for_confirm"
NOT_RUN = "Not run:"
DENIED = "Action denied by user."
"""What the model reads for a rejected call, before the person's reason."""


@dataclass(frozen=True)
class Served:
    """A running `langgraph dev`: where to reach it, its ledger database and its log."""

    url: str
    db: Path
    log: Path


@dataclass(frozen=True)
class Script:
    """The module's scripted model server as one test sees it: its replies, its requests."""

    server: ScriptedServer
    first: int
    """How many requests the server had received when the test started."""

    def add(self, *replies: ScriptedReply) -> None:
        self.server.add(*replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests of this test, in order."""
        return self.server.requests[self.first:]


def config_text(model_url: str, db: Path) -> str:
    """The server's graphloop.toml: the test tools, three of them gated (`get_weather` with
    only approve and reject), a ledger database."""
    return (
        f'db = "{db}"\n'
        'tools = ["conftest:TOOLS", "conftest:send_email"]\n'
        'confirm_required = ["delete_file", "send_email", "get_weather"]\n\n'
        '[allowed_decisions]\n'
        'delete_file = ["approve", "edit", "reject", "respond"]\n'
        'get_weather = ["approve", "reject"]\n\n'
        f'[[models]]\nlabel = "primary"\napi_url = "{model_url}"\nmodel_name = "scripted"\n'
        'max_retries = 0\n')


@pytest.fixture(scope="module")
def model_server() -> Iterator[ScriptedServer]:
    with ScriptedServer(strict=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def served(model_server: ScriptedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`langgraph dev` on loopback for the module, its models and tools from a graphloop.toml."""
    folder = tmp_path_factory.mktemp("review_uis")
    db, log_path = folder / "served.db", folder / "dev.log"
    (folder / "graphloop.toml").write_text(config_text(model_server.url, db))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent),
           "GRAPHLOOP_CONFIG": str(folder / "graphloop.toml"), "LANGSMITH_TRACING": "false"}
    cli = Path(sys.executable).parent / "langgraph"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(cli), "dev", "--config", str(ROOT / "langgraph.json"), "--port", str(port), "--no-browser",
             "--no-reload"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(url, process, log_path)
            yield Served(url=url, db=db, log=log_path)
        finally:
            process.terminate()
            process.wait(30)


@pytest.fixture
def script(model_server: ScriptedServer) -> Iterator[Script]:
    """This test's part of the scripted server; every reply it adds must be used (a test that
    stops early leaves its replies to the next one, which then fails too)."""
    yield Script(model_server, len(model_server.requests))
    model_server.assert_all_used()


@pytest.fixture
def client(served: Served) -> Iterator[SyncLangGraphClient]:
    with get_sync_client(url=served.url) as c:
        yield c


@pytest.fixture
def approvals(served: Served) -> Approvals:
    return Approvals(served.db)


# -- what the UIs send ----------------------------------------------------------------------------


def human(text: str) -> dict[str, Any]:
    """A user message as Agent Chat UI sends it: content as a list of text blocks."""
    return {"type": "human", "content": [{"type": "text", "text": text}]}


def decisions(*items: dict[str, Any]) -> Command:
    """Agent Chat UI's resume command."""
    return {"resume": {"decisions": list(items)}}


def inbox(response: dict[str, Any]) -> Command:
    """Agent Inbox's resume command: always a list with one response."""
    return {"resume": [response]}


MARK_AS_RESOLVED: Command = {"goto": "__end__"}
"""Agent Chat UI's "Mark as Resolved": no resume value."""


# -- helpers ------------------------------------------------------------------------------------------


def paused_on(client: SyncLangGraphClient, script: Script, approvals: Approvals, *calls: ScriptedToolCall,
              question: str, text: str = "please do it") -> str:
    """A new thread whose first run stopped at the gate (and is listed in the inbox), the
    model having made `calls` and phrased `question`; its id."""
    script.add(reply(None, *calls), reply(question))
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, GRAPH, input={"messages": [human(text)]})
    assert client.threads.get_state(thread)["next"] == [GATE]
    assert in_inbox(approvals, thread)
    return thread


def failed_run(client: SyncLangGraphClient, thread: str, **run: Any) -> str:
    """Start a run that must fail; the error the server reports for it, as `Name: message`."""
    created = client.runs.create(thread, GRAPH, **run)
    joined: Any = client.runs.join(thread, created["run_id"])
    assert client.runs.get(thread, created["run_id"])["status"] == "error"
    return f"{joined['__error__']['error']}: {joined['__error__']['message']}"


def tool_results(client: SyncLangGraphClient, thread: str) -> list[tuple[str, str]]:
    """The thread's tool messages as (call id, content)."""
    messages = values(client, thread)["messages"]
    return [(m["tool_call_id"], m["content"]) for m in messages if m["type"] == "tool"]


def values(client: SyncLangGraphClient, thread: str) -> dict[str, Any]:
    state: Any = client.threads.get_state(thread)
    return state["values"]


def text_of(message: dict[str, Any]) -> str:
    """A request message's text, whether its content is a string or a list of blocks."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "".join(str(block.get("text", "")) for block in content if isinstance(block, dict))


def index_of_user(messages: list[dict[str, Any]], text: str) -> int:
    [index] = [i for i, m in enumerate(messages) if m["role"] == "user" and text in text_of(m)]
    return index


def tool_answers(messages: list[dict[str, Any]]) -> dict[str, tuple[int, str]]:
    """Tool call id → (position, content) of each tool message in a request."""
    return {m["tool_call_id"]: (i, text_of(m)) for i, m in enumerate(messages) if m["role"] == "tool"}


def assert_every_call_answered(messages: list[dict[str, Any]]) -> None:
    """Each assistant tool call has its tool message before the next message of another kind."""
    for index, message in enumerate(messages):
        calls = {c["id"] for c in message.get("tool_calls") or []}
        if message["role"] != "assistant" or not calls:
            continue
        answered: set[str] = set()
        for after in messages[index + 1:]:
            if after["role"] != "tool":
                break
            answered.add(after["tool_call_id"])
        assert calls <= answered, f"calls {sorted(calls - answered)} of message #{index} unanswered"


def review_request(client: SyncLangGraphClient, thread: str) -> dict[str, Any]:
    """The HITL request of the thread's one interrupt, as a review UI reads it."""
    state: Any = client.threads.get_state(thread)
    [waiting] = state["interrupts"]
    return waiting["value"]


def ran(approvals: Approvals, thread: str) -> dict[str, tuple[str, str, dict[str, object]]]:
    """The thread's audit rows by call id, as (tool, status, arguments it ran with); one row per
    call id, or the call was claimed twice."""
    rows = approvals.tool_calls(thread)
    by_id = {row["call_id"]: (row["tool"], row["status"], row["args"]) for row in rows}
    assert len(by_id) == len(rows), f"a call audited twice: {rows!r}"
    return by_id


def assert_finished(client: SyncLangGraphClient, approvals: Approvals, thread: str, answer: str) -> None:
    """The run went on to the model's `answer`: nothing waits, nothing is pending or listed."""
    state: Any = client.threads.get_state(thread)
    assert (state["next"], state["interrupts"], state["values"]["pending"]) == ([], [], [])
    assert state["values"]["messages"][-1]["content"] == answer
    assert not in_inbox(approvals, thread)


def audit(approvals: Approvals, thread: str) -> list[tuple[str, str]]:
    """The thread's audit rows as (tool, status)."""
    return [(row["tool"], row["status"]) for row in approvals.tool_calls(thread)]


def in_inbox(approvals: Approvals, thread: str) -> bool:
    return any(entry["thread_id"] == thread for entry in approvals.pending())


def assert_dismissed(client: SyncLangGraphClient, approvals: Approvals, thread: str, call_id: str) -> None:
    """The pause is gone: nothing waits, the call is answered as not run and audited so."""
    state: Any = client.threads.get_state(thread)
    assert state["next"] == []
    assert state["interrupts"] == []
    assert state["values"]["pending"] == []
    last = state["values"]["messages"][-1]
    assert (last["type"], last["tool_call_id"]) == ("tool", call_id)
    assert last["content"].startswith(NOT_RUN)
    assert audit(approvals, thread) == [("delete_file", "abandoned")]
    assert not in_inbox(approvals, thread)


# -- Agent Chat UI ------------------------------------------------------------------------------------


def test_a_second_approve_of_the_same_checkpoint_is_refused_and_runs_nothing(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="approve-twice", path="/tmp/x"),
                       question="May I delete /tmp/x?")
    script.add(reply("Deleted /tmp/x."))
    checkpoint = client.threads.get_state(thread)["checkpoint"]
    command = decisions({"type": "approve"})

    client.runs.wait(thread, GRAPH, input={}, command=command, checkpoint=checkpoint)
    first: Any = client.threads.get_state(thread)
    error = failed_run(client, thread, input={}, command=command, checkpoint=checkpoint)  # a second tab

    assert audit(approvals, thread) == [("delete_file", "success")]
    second: Any = client.threads.get_state(thread)
    assert first["values"]["messages"][-1]["content"] == "Deleted /tmp/x."
    assert second["values"]["messages"] == first["values"]["messages"]
    assert second["next"] == first["next"] == []
    assert len(script.requests) == 3  # the call, the question, the answer: nothing after
    assert error.startswith("AlreadyDecidedError: ")
    assert "already decided" in error  # the client is told why


def test_a_new_message_while_paused_answers_the_gated_call_as_not_run(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="went-on", path="/tmp/y"),
                       question="May I delete /tmp/y?")
    [ai] = [m for m in values(client, thread)["messages"] if m["type"] == "ai"]
    [call] = ai["tool_calls"]
    script.add(reply("2 + 2 = 4."))

    client.runs.wait(thread, GRAPH, input={"messages": [
        {"type": "tool", "tool_call_id": call["id"], "name": call["name"],
         "content": "Successfully handled tool call."},
        human("never mind, what is 2+2?")]})

    sent = script.requests[-1].messages
    answers = tool_answers(sent)
    position, content = answers[call["id"]]
    assert content.startswith(NOT_RUN)
    assert "Successfully handled" not in content
    assert position < index_of_user(sent, "never mind, what is 2+2?")
    assert not any("Successfully handled" in text_of(m) for m in sent)
    state: Any = client.threads.get_state(thread)
    assert state["values"]["pending"] == []
    assert state["next"] == []
    assert state["values"]["messages"][-1]["content"] == "2 + 2 = 4."
    assert audit(approvals, thread) == [("delete_file", "abandoned")]
    assert not in_inbox(approvals, thread)


def test_a_new_message_while_paused_answers_every_call_of_the_turn_before_it(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("add", id="plain-add", a=2, b=3),
                       tool_call("delete_file", id="plain-del", path="/tmp/z"),
                       question="May I delete /tmp/z?")
    script.add(reply("2 + 2 = 4."))

    # one call of the turn was answered (add ran), so the UI sends only the new message
    client.runs.wait(thread, GRAPH, input={"messages": [human("never mind, what is 2+2?")]})

    sent = script.requests[-1].messages
    answers = tool_answers(sent)
    user = index_of_user(sent, "never mind, what is 2+2?")
    assert answers["plain-add"][1] == "5"
    assert answers["plain-del"][1].startswith(NOT_RUN)
    assert answers["plain-add"][0] < user and answers["plain-del"][0] < user
    assert_every_call_answered(sent)
    assert values(client, thread)["pending"] == []
    assert sorted(audit(approvals, thread)) == [("add", "success"), ("delete_file", "abandoned")]


def test_mark_as_resolved_answers_the_call_as_not_run_and_ends_the_pause(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="resolved", path="/tmp/r"),
                       question="May I delete /tmp/r?")

    run = client.runs.create(thread, GRAPH, command=MARK_AS_RESOLVED)
    client.runs.join(thread, run["run_id"])

    assert client.runs.get(thread, run["run_id"])["status"] == "success"
    assert_dismissed(client, approvals, thread, "resolved")
    assert len(script.requests) == 2  # the model is not asked again


def test_edited_fields_sent_as_text_are_converted_to_the_tools_types(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    mail = tool_call("send_email", id="mail", to=["ann@example.com"], subject="hi", copies=1)
    thread = paused_on(client, script, approvals, mail, question="May I send 'hi' to Ann?")
    edit = {"type": "edit", "edited_action": {"name": "send_email", "args": {
        "to": '["bob@example.com"]', "subject": "hi", "copies": "7"}}}
    bad = {"type": "edit", "edited_action": {"name": "send_email", "args": {
        "to": '["bob@example.com"]', "subject": "hi", "copies": "seven"}}}
    checkpoint = client.threads.get_state(thread)["checkpoint"]

    error = failed_run(client, thread, input={}, command=decisions(bad), checkpoint=checkpoint)
    assert error.startswith("ValidationError: ") and "field 'copies'" in error
    assert client.threads.get_state(thread)["next"] == [GATE]  # still paused
    assert audit(approvals, thread) == []

    script.add(reply("Sent."))
    checkpoint = client.threads.get_state(thread)["checkpoint"]
    client.runs.wait(thread, GRAPH, input={}, command=decisions(edit), checkpoint=checkpoint)

    assert tool_results(client, thread) == [("mail", "sent 'hi' to ['bob@example.com'] x7")]
    [row] = approvals.tool_calls(thread)
    assert (row["tool"], row["status"]) == ("send_email", "success")
    assert row["args"] == {"to": ["bob@example.com"], "subject": "hi", "copies": 7}


def test_the_confirmation_question_is_not_streamed_but_shown_in_the_interrupt(
        client: SyncLangGraphClient, script: Script) -> None:
    question = "Shall I really delete /tmp/s?"
    script.add(reply("I will delete it.", tool_call("delete_file", id="streamed", path="/tmp/s")),
               reply(question))
    thread = client.threads.create()["thread_id"]

    events = list(client.runs.stream(thread, GRAPH, input={"messages": [human("delete /tmp/s")]},
                                     stream_mode=["messages-tuple", "values"]))

    nodes = [e.data[1].get("langgraph_node") for e in events if e.event == "messages"]
    assert "call_model" in nodes  # tokens do stream...
    assert "ask_confirmation" not in nodes  # ...but not the question's
    interrupts: list[Any] = [i for e in events if e.event == "values"
                             for i in e.data.get("__interrupt__", [])]
    assert [i["value"]["action_requests"][0]["description"] for i in interrupts] == [question]


def test_a_reject_with_a_reason_runs_nothing_and_tells_the_model_why(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="reject-why", path="/tmp/t"),
                       question="May I delete /tmp/t?")
    script.add(reply("I left /tmp/t alone."))
    checkpoint = client.threads.get_state(thread)["checkpoint"]
    reason = "that folder holds my thesis"

    client.runs.wait(thread, GRAPH, input={}, checkpoint=checkpoint,
                     command=decisions({"type": "reject", "message": reason}))

    sent = script.requests[-1].messages
    assert tool_answers(sent)["reject-why"][1] == f"{DENIED} {reason}"
    assert_every_call_answered(sent)
    assert len(script.requests) == 3  # the call, the question, the answer to the rejection
    assert ran(approvals, thread) == {"reject-why": ("delete_file", "rejected", {"path": "/tmp/t"})}
    assert_finished(client, approvals, thread, "I left /tmp/t alone.")


def several(prefix: str) -> list[ScriptedToolCall]:
    """Three gated calls of one turn, their ids starting with `prefix`."""
    return [tool_call("delete_file", id=f"{prefix}-1", path="/tmp/1"),
            tool_call("send_email", id=f"{prefix}-2", to=["ann@example.com"], subject="hi", copies=2),
            tool_call("delete_file", id=f"{prefix}-3", path="/tmp/3")]


def test_approve_all_runs_each_call_of_the_pause_once(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, *several("all"), question="May I do these three?")
    request = review_request(client, thread)
    assert request["action_requests"] == [
        {"name": "delete_file", "args": {"path": "/tmp/1"}, "description": "May I do these three?",
         "arguments": {"path": "/tmp/1"}},
        {"name": "send_email", "args": {"to": ["ann@example.com"], "subject": "hi", "copies": 2},
         "description": "May I do these three?",
         "arguments": {"to": ["ann@example.com"], "subject": "hi", "copies": 2}},
        {"name": "delete_file", "args": {"path": "/tmp/3"}, "description": "May I do these three?",
         "arguments": {"path": "/tmp/3"}}]
    assert request["review_configs"] == [
        {"action_name": "delete_file", "allowed_decisions": ["approve", "edit", "reject", "respond"]},
        {"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject"]},
        {"action_name": "delete_file", "allowed_decisions": ["approve", "edit", "reject", "respond"]}]
    script.add(reply("All done."))
    checkpoint = client.threads.get_state(thread)["checkpoint"]

    client.runs.wait(thread, GRAPH, input={}, checkpoint=checkpoint, command=decisions(*[{"type": "approve"}] * 3))

    results = {"all-1": "deleted /tmp/1", "all-2": "sent 'hi' to ['ann@example.com'] x2", "all-3": "deleted /tmp/3"}
    assert dict(tool_results(client, thread)) == results
    sent = script.requests[-1].messages
    assert {call_id: content for call_id, (_, content) in tool_answers(sent).items()} == results
    assert_every_call_answered(sent)
    assert ran(approvals, thread) == {
        "all-1": ("delete_file", "success", {"path": "/tmp/1"}),
        "all-2": ("send_email", "success", {"to": ["ann@example.com"], "subject": "hi", "copies": 2}),
        "all-3": ("delete_file", "success", {"path": "/tmp/3"})}
    assert len(script.requests) == 3
    assert_finished(client, approvals, thread, "All done.")


def test_mixed_decisions_give_each_call_of_the_pause_its_own_outcome(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, *several("mixed"), question="May I do these three?")
    script.add(reply("Deleted two files, sent nothing."))
    checkpoint = client.threads.get_state(thread)["checkpoint"]

    client.runs.wait(thread, GRAPH, input={}, checkpoint=checkpoint, command=decisions(
        {"type": "approve"},
        {"type": "reject", "message": "not to Ann"},
        {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "/tmp/other"}}}))

    sent = script.requests[-1].messages
    assert {call_id: content for call_id, (_, content) in tool_answers(sent).items()} == {
        "mixed-1": "deleted /tmp/1", "mixed-2": f"{DENIED} not to Ann", "mixed-3": "deleted /tmp/other"}
    assert_every_call_answered(sent)
    assert ran(approvals, thread) == {
        "mixed-1": ("delete_file", "success", {"path": "/tmp/1"}),
        "mixed-2": ("send_email", "rejected", {"to": ["ann@example.com"], "subject": "hi", "copies": 2}),
        "mixed-3": ("delete_file", "success", {"path": "/tmp/other"})}
    assert_finished(client, approvals, thread, "Deleted two files, sent nothing.")


@pytest.mark.parametrize("edited", [{"subject": "Minutes of Monday"}, {"copies": "4"}], ids=["text", "int"])
def test_an_edit_of_one_field_keeps_the_types_of_the_untouched_ones(
        client: SyncLangGraphClient, script: Script, approvals: Approvals, edited: dict[str, str]) -> None:
    original: dict[str, object] = {"to": ["ann@example.com", "bob@example.com"], "subject": "hi", "copies": 3}
    call_id = f"one-field-{next(iter(edited))}"
    thread = paused_on(client, script, approvals, tool_call("send_email", original, id=call_id),
                       question="May I send 'hi' to Ann and Bob?")
    script.add(reply("Sent."))
    checkpoint = client.threads.get_state(thread)["checkpoint"]
    # the UI sends the whole form: the edited field as its textarea text, the others as they came
    edit = {"type": "edit", "edited_action": {"name": "send_email", "args": {**original, **edited}}}

    client.runs.wait(thread, GRAPH, input={}, checkpoint=checkpoint, command=decisions(edit))

    expected = {**original, **{k: int(v) if k == "copies" else v for k, v in edited.items()}}
    assert ran(approvals, thread) == {call_id: ("send_email", "success", expected)}
    [(_, result)] = tool_results(client, thread)
    assert result == f"sent {expected['subject']!r} to {expected['to']!r} x{expected['copies']}"
    assert_finished(client, approvals, thread, "Sent.")


def test_the_review_card_offers_only_the_decisions_the_tool_allows(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("get_weather", id="weather", city="Oslo"),
                       question="May I look up the weather in Oslo?")
    request = review_request(client, thread)
    # the UI finds a call's config by its tool name
    configs = {c["action_name"]: c["allowed_decisions"] for c in request["review_configs"]}
    assert request["action_requests"] == [
        {"name": "get_weather", "args": {"city": "Oslo"}, "description": "May I look up the weather in Oslo?",
         "arguments": {"city": "Oslo"}}]
    assert configs == {"get_weather": ["approve", "reject"]}
    edit = {"type": "edit", "edited_action": {"name": "get_weather", "args": {"city": "Bergen"}}}
    checkpoint = client.threads.get_state(thread)["checkpoint"]

    error = failed_run(client, thread, input={}, checkpoint=checkpoint, command=decisions(edit))

    assert error.startswith("ValidationError: ") and "'edit' is not allowed for 'get_weather'" in error
    assert client.threads.get_state(thread)["next"] == [GATE] and audit(approvals, thread) == []
    script.add(reply("Sunny in Oslo."))
    client.runs.wait(thread, GRAPH, input={}, command=decisions({"type": "approve"}),
                     checkpoint=client.threads.get_state(thread)["checkpoint"])
    assert ran(approvals, thread) == {"weather": ("get_weather", "success", {"city": "Oslo"})}
    assert_finished(client, approvals, thread, "Sunny in Oslo.")


# -- Agent Inbox ------------------------------------------------------------------------------------


def test_inbox_accept_runs_the_call_once(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="accept", path="/tmp/a"),
                       question="May I delete /tmp/a?")
    script.add(reply("Deleted /tmp/a."))

    client.runs.wait(thread, GRAPH, command=inbox({"type": "accept", "args": None}))

    assert tool_results(client, thread) == [("accept", "deleted /tmp/a")]
    assert audit(approvals, thread) == [("delete_file", "success")]
    assert client.threads.get_state(thread)["next"] == []


@pytest.mark.parametrize("shown", [
    {"to": ["ann@example.com"], "subject": "hi", "copies": 2},
    {"to": '["ann@example.com"]', "subject": "hi", "copies": "2"},  # fields typed over with the same text
], ids=["as-shown", "as-text"])
def test_inbox_accept_with_the_shown_arguments_runs_the_original_call_once(
        client: SyncLangGraphClient, script: Script, approvals: Approvals, shown: dict[str, object]) -> None:
    original: dict[str, object] = {"to": ["ann@example.com"], "subject": "hi", "copies": 2}
    call_id = f"accept-{type(shown['copies']).__name__}"
    thread = paused_on(client, script, approvals, tool_call("send_email", original, id=call_id),
                       question="May I send 'hi' to Ann?")
    script.add(reply("Sent."))
    assert review_request(client, thread)["action_requests"][0]["arguments"] == original  # what the Inbox shows

    client.runs.wait(thread, GRAPH, command=inbox({"type": "accept", "args": {"action": "send_email", "args": shown}}))

    assert tool_results(client, thread) == [(call_id, "sent 'hi' to ['ann@example.com'] x2")]
    assert ran(approvals, thread) == {call_id: ("send_email", "success", original)}
    assert_finished(client, approvals, thread, "Sent.")


def test_inbox_accept_with_other_arguments_is_refused_and_the_call_still_waits(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="other", path="/tmp/o"),
                       question="May I delete /tmp/o?")

    error = failed_run(client, thread, command=inbox({"type": "accept", "args": {"action": "delete_file", "args": {}}}))

    assert "accept approves the call as shown; send an edit to change it" in error
    assert client.threads.get_state(thread)["next"] == [GATE] and audit(approvals, thread) == []


def test_inbox_edit_runs_the_call_with_the_edited_arguments(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="edit", path="/tmp/e"),
                       question="May I delete /tmp/e?")
    script.add(reply("Deleted /tmp/other."))

    client.runs.wait(thread, GRAPH, command=inbox(
        {"type": "edit", "args": {"action": "delete_file", "args": {"path": "/tmp/other"}}}))

    assert tool_results(client, thread) == [("edit", "deleted /tmp/other")]
    [row] = approvals.tool_calls(thread)
    assert (row["status"], row["args"]) == ("success", {"path": "/tmp/other"})


def test_inbox_response_answers_in_the_tools_place(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="respond", path="/tmp/k"),
                       question="May I delete /tmp/k?")
    script.add(reply("Kept /tmp/k."))

    client.runs.wait(thread, GRAPH, command=inbox({"type": "response", "args": "no, keep that file"}))

    sent = script.requests[-1].messages
    assert tool_answers(sent)["respond"][1] == "no, keep that file"
    assert audit(approvals, thread) == [("delete_file", "responded")]
    assert values(client, thread)["messages"][-1]["content"] == "Kept /tmp/k."


def test_inbox_ignore_answers_the_call_as_not_run_and_ends_the_pause(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="ignore", path="/tmp/i"),
                       question="May I delete /tmp/i?")

    run = client.runs.create(thread, GRAPH, command=inbox({"type": "ignore", "args": None}))
    client.runs.join(thread, run["run_id"])

    assert client.runs.get(thread, run["run_id"])["status"] == "success"
    assert_dismissed(client, approvals, thread, "ignore")
    assert len(script.requests) == 2


def test_inbox_ignore_as_a_state_update_to_end_answers_the_call_as_not_run(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="update", path="/tmp/u"),
                       question="May I delete /tmp/u?")

    client.threads.update_state(thread, None, as_node="__end__")

    assert_dismissed(client, approvals, thread, "update")
    assert len(script.requests) == 2


# -- what a client may not do ---------------------------------------------------------------------


def test_a_client_cannot_bring_a_policy_that_lifts_the_gate(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = client.threads.create()["thread_id"]
    policy = {"user_role": "user", "tool_list": None, "confirm_allow": ["delete_file"], "confirm_deny": [],
              "max_rounds": 10, "respond_with_final": True, "ask_model_to_confirm": True}

    error = failed_run(client, thread, input={"messages": [human("delete /tmp/p")], "policy": policy})

    assert error.startswith("ClientInputError: ") and "only 'messages'" in error
    assert values(client, thread) == {} and script.requests == [] and audit(approvals, thread) == []


def test_a_resume_cannot_carry_a_state_update_or_send_a_call_to_run(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="sneak", path="/tmp/s"),
                       question="May I delete /tmp/s?")
    lifted = {**values(client, thread)["policy"], "gate": {"tools": ["delete_file"], "gated": [], "decisions": {}}}
    job = {"id": "sneak", "name": "delete_file", "args": {"path": "/etc"}}

    update = failed_run(client, thread, command={"resume": {"decisions": [{"type": "reject"}]},
                                                  "update": {"policy": lifted}})
    send = failed_run(client, thread, command={"goto": [{"node": "run_tool", "input": job}]})

    assert "may not carry a state update" in update and "may go to '__end__' only" in send
    assert client.threads.get_state(thread)["next"] == [GATE] and audit(approvals, thread) == []


def test_a_client_cannot_rewrite_the_call_or_forge_a_decision_by_updating_the_state(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="forge", path="/tmp/f"),
                       question="May I delete /tmp/f?")
    [ai] = [m for m in values(client, thread)["messages"] if m["type"] == "ai"]
    rewritten = {**ai, "tool_calls": [{**ai["tool_calls"][0], "args": {"path": "/etc"}}]}
    forged = [{"id": "forge", "name": "delete_file", "args": {"path": "/tmp/f"}, "decision": {"type": "approve"}}]

    for values_, node in (({"messages": [rewritten]}, "ask_confirmation"), ({"pending": forged}, GATE)):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            client.threads.update_state(thread, values_, as_node=node)
        assert "takes no state updates from clients" in refused.value.response.text

    assert client.threads.get_state(thread)["next"] == [GATE]
    assert values(client, thread)["messages"][-1]["tool_calls"][0]["args"] == {"path": "/tmp/f"}
    assert audit(approvals, thread) == []
    script.add(reply("Kept."))  # the thread is intact: a rejection still goes through
    client.runs.wait(thread, GRAPH, command=decisions({"type": "reject"}))
    assert audit(approvals, thread) == [("delete_file", "rejected")]


def test_an_approval_from_the_view_before_a_new_message_is_refused(
        client: SyncLangGraphClient, script: Script, approvals: Approvals) -> None:
    thread = paused_on(client, script, approvals, tool_call("delete_file", id="moved-on", path="/tmp/m"),
                       question="May I delete /tmp/m?")
    checkpoint = client.threads.get_state(thread)["checkpoint"]
    [ai] = [m for m in values(client, thread)["messages"] if m["type"] == "ai"]
    script.add(reply("Fine."))
    # a message carrying the assistant message's id must not take its call out of the history
    client.runs.wait(thread, GRAPH, input={"messages": [{**human("never mind"), "id": ai["id"]}]})
    error = failed_run(client, thread, input={}, command=decisions({"type": "approve"}), checkpoint=checkpoint)
    assert error.startswith("AlreadyDecidedError: ") and "earlier view" in error
    assert audit(approvals, thread) == [("delete_file", "abandoned")]
    assert values(client, thread)["messages"][-1]["content"] == "Fine."


@pytest.mark.parametrize("strategy", ["enqueue", "reject"])
def test_a_double_submit_loses_no_turn(client: SyncLangGraphClient, script: Script, strategy: Any) -> None:
    thread = client.threads.create()["thread_id"]
    script.add(reply("first answer", delay=1.5))
    first = client.runs.create(thread, GRAPH, input={"messages": [human("first")]}, multitask_strategy=strategy)
    accepted = [first]
    try:  # the same submit again while the first runs: a double click, a second tab
        accepted.append(client.runs.create(thread, GRAPH, input={"messages": [human("second")]},
                                           multitask_strategy=strategy))
        script.add(reply("second answer"))
    except httpx.HTTPStatusError as refused:
        assert strategy == "reject" and refused.response.status_code == 409
    for run in accepted:
        client.runs.join(thread, run["run_id"])
    messages = values(client, thread)["messages"]
    said = [(m["type"], text_of(m)) for m in messages]
    expected = [("human", "first"), ("ai", "first answer")]
    if len(accepted) == 2:
        expected += [("human", "second"), ("ai", "second answer")]
    assert said == expected  # every accepted turn whole, in order; none lost or interleaved
