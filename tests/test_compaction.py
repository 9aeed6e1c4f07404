"""Context that always fits: exact offline counts and the compaction strategy, in requests sent."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import tiktoken_ext
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)

from graphloop.graph import (
    CompactionSettings,
    ContextBudgetError,
    LoopContext,
    ModelConfig,
    compile_graph,
)
from graphloop.graph.testing import RecordedRequest, ScriptedServer, error, reply, tool_call
from graphloop.nodes import tokens
from graphloop.nodes.tokens import OFFLINE_ENCODING, TokenCounter, count_tokens, counter_for
from graphloop.nodes.view import shown

from test_loop import start

COUNTER = counter_for("scripted")
WORDS = "alpha beta gamma delta epsilon "


def big(i: int, size: int = 4000) -> str:
    """Return a large result."""
    return f"r{i} " + (WORDS * (size // len(WORDS) + 1))[:size]


def sent_tokens(request: RecordedRequest) -> int:
    """Tokens of a request as the server received it, counted again from its JSON body."""
    return COUNTER.request(convert_to_messages(request.messages), request.body.get("tools", []))


def tool_contents(request: RecordedRequest) -> list[str]:
    return [m["content"] for m in request.messages if m["role"] == "tool"]


def loop(server: ScriptedServer, rounds: int, size: int = 4000, **settings: Any) -> dict[str, Any]:
    context = LoopContext.create(models=[server.model_config(context_k=4)], tools=[big],
                                 compaction=CompactionSettings(**settings))
    server.add(*[reply(None, tool_call("big", i=i, size=size)) for i in range(rounds)], reply("done"))
    return compile_graph().invoke(start("go", max_rounds=rounds + 1), context=context)


# -- counting --------------------------------------------------------------------------------


def test_counts_are_exact_cl100k_with_chat_framing() -> None:
    encoding = COUNTER.encoding
    assert encoding.name == OFFLINE_ENCODING
    assert encoding.encode("Hello, world") == [9906, 11, 1917]  # cl100k_base's published ids
    # 3 framing + 1 role + 3 content, plus 3 for the reply priming
    assert count_tokens([HumanMessage("Hello, world")]) == 10
    call = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1"}])
    assert COUNTER.message(call) == 3 + 1 + 0 + 3 + COUNTER.text("add") + COUNTER.text("c1") + COUNTER.text('{"a": 1}')


def test_tool_schemas_and_system_prompt_count() -> None:
    schema = {"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {}}}
    bare = count_tokens([HumanMessage("x")])
    assert count_tokens([HumanMessage("x")], [schema]) > bare
    assert count_tokens([SystemMessage("You are terse."), HumanMessage("x")]) > bare


def test_each_message_is_encoded_once_per_content() -> None:
    encoded: list[str] = []

    class Spy(TokenCounter):
        def text(self, text: str) -> int:
            encoded.append(text)
            return super().text(text)

    counter = Spy(COUNTER.encoding)
    message = ToolMessage("result " * 50, tool_call_id="c1", id="m1")
    counter.message(message)
    first = len(encoded)
    counter.message(message)
    assert len(encoded) == first  # cached by id and content
    counter.message(message.model_copy(update={"content": "changed"}))
    assert len(encoded) > first


def test_models_own_encoding_is_used_only_when_tiktoken_has_it_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tokens, "_encodings", {})
    assert tokens.encoding_for("gpt-4").name == OFFLINE_ENCODING  # not cached: bundled copy, no fetch

    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    bundled = Path(tiktoken_ext.__path__[0]) / "data" / "cl100k_base.tiktoken"
    shutil.copy(bundled, tmp_path / hashlib.sha1(url.encode()).hexdigest())
    monkeypatch.setattr(tokens, "_encodings", {})
    assert tokens.encoding_for("gpt-4").name == "cl100k_base"  # cached: the model's own
    assert tokens.encoding_for("my-local-llama").name == OFFLINE_ENCODING


def test_budget_is_the_fraction_of_the_window_minus_reserved_output() -> None:
    cfg = ModelConfig("m", "http://h/v1", "m", context_k=8, max_output_tokens=1000)
    assert cfg.budget() == 5000 and cfg.budget(0.5) == 3000
    small = ModelConfig("s", "http://h/v1", "s", context_k=4)
    assert LoopContext.create(models=[cfg, small]).budget_tokens == 3000  # the smallest window


# -- the strategy, as sent -------------------------------------------------------------------


def test_under_budget_nothing_is_compacted(server: ScriptedServer) -> None:
    out = loop(server, rounds=2, size=200)
    assert tool_contents(server.requests[-1]) == [big(0, 200), big(1, 200)]
    assert "compacted" not in out or out["compacted"] == []
    assert out["compaction"]["tokens_before"] == out["compaction"]["tokens_after"]


def test_old_results_are_cleared_oldest_first_only_until_the_request_fits(server: ScriptedServer) -> None:
    out = loop(server, rounds=6, keep=2)
    settings = CompactionSettings(keep=2)
    last = tool_contents(server.requests[-1])
    cleared = [i for i, text in enumerate(last) if text != big(i)]
    assert cleared == list(range(len(cleared))) and 0 < len(cleared) < 4  # oldest first, stopped early
    for i in cleared:
        assert last[i] == shown(big(i), 400, settings) and last[i].endswith(f" …[{len(big(i)) - 400} chars omitted]")
    for request in server.requests:
        assert sent_tokens(request) <= 3000
    kept = [m.content for m in out["messages"] if isinstance(m, ToolMessage)]
    assert kept == [big(i) for i in range(6)]  # state keeps everything whole


def test_the_newest_keep_results_and_excluded_tools_are_never_cleared(server: ScriptedServer) -> None:
    loop(server, rounds=6, keep=5, exclude_tools=frozenset({"big"}))
    # nothing may be cleared: whole rounds are dropped instead, oldest first, never half a round
    last = server.requests[-1].messages
    assert all(m["content"] in {big(i) for i in range(6)} for m in last if m["role"] == "tool")
    calls = {c["id"] for m in last if m["role"] == "assistant" for c in m.get("tool_calls", [])}
    answers = {m["tool_call_id"] for m in last if m["role"] == "tool"}
    assert calls == answers and len(answers) < 6
    assert last[0] == {"role": "user", "content": "go"}
    assert tool_contents(server.requests[-1])[-1] == big(5)
    assert sent_tokens(server.requests[-1]) <= 3000


def test_a_cleared_result_stays_cleared_so_the_prefix_is_stable(server: ScriptedServer) -> None:
    loop(server, rounds=8, keep=2)
    for earlier, later in zip(server.requests, server.requests[1:], strict=False):
        before, after = tool_contents(earlier), tool_contents(later)
        for old, new in zip(before, after, strict=False):
            assert new in (old, shown(old, 400, CompactionSettings())) or len(new) <= len(old)
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b]
        if changed:  # only newly compacted results differ; all before them is sent unchanged
            assert later.messages[: changed[0]] == earlier.messages[: changed[0]]


def test_latest_results_are_shortened_largest_first_when_nothing_else_is_left(server: ScriptedServer) -> None:
    context = LoopContext.create(models=[server.model_config(context_k=4)], tools=[big])
    server.add(reply(None, tool_call("big", i=0, size=16000), tool_call("big", i=1, size=3000),
                     tool_call("big", i=2, size=200)), reply("done"))
    out = compile_graph().invoke(start("go"), context=context)
    large, medium, small = tool_contents(server.requests[-1])
    assert " chars omitted]" in large and large.startswith("r0 alpha")
    assert medium == big(1, 3000) and small == big(2, 200)  # shortening stopped once it fitted
    assert sent_tokens(server.requests[-1]) <= 3000
    assert out["compaction"]["shortened"] == [out["messages"][2].id]


def test_too_large_a_fixed_part_raises_before_anything_is_sent(server: ScriptedServer) -> None:
    context = LoopContext.create(models=[server.model_config(context_k=1)], tools=[big])
    with pytest.raises(ContextBudgetError) as caught:
        compile_graph().invoke({"messages": [SystemMessage(WORDS * 200), HumanMessage("go")]},
                               context=context)
    text = str(caught.value)
    assert text.startswith("the system prompt (1005 tokens), the task (5 tokens) and the tool schemas (")
    assert "alone exceed the budget of 750 tokens" in text
    assert server.requests == []


def test_a_context_length_error_is_answered_by_one_tighter_retry(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    context = LoopContext.create(models=[server.model_config(context_k=4)], tools=[big])
    server.add(*[reply(None, tool_call("big", i=i, size=3000)) for i in range(4)],
               error(400, "This model's maximum context length is 2048 tokens. However, your "
                          "messages resulted in 2900 tokens."),
               reply("done"))
    caplog.set_level(logging.WARNING)
    out = compile_graph().invoke(start("go"), context=context)
    failed, retried = server.requests[-2], server.requests[-1]
    assert sent_tokens(retried) <= int(2048 * 0.75) < sent_tokens(failed) <= 3000
    assert out["messages"][-1].content == "done"
    assert out["compaction"]["budget"] == 1536
    assert any("compacting to 1536 tokens and retrying once" in r.getMessage() for r in caplog.records)


def test_a_second_context_length_error_is_not_retried_again(server: ScriptedServer) -> None:
    from graphloop.graph import ContextOverflowError

    context = LoopContext.create(models=[server.model_config()], tools=[big])
    server.add(error(400, "context_length_exceeded"), error(400, "context_length_exceeded"))
    with pytest.raises(ContextOverflowError, match="answered HTTP 400"):
        compile_graph().invoke(start("go"), context=context)
    assert len(server.requests) == 2


def test_history_with_messages_of_every_kind_keeps_system_and_task(server: ScriptedServer) -> None:
    session: list[BaseMessage] = [SystemMessage("sys"), HumanMessage("earlier question"),
                                  AIMessage("earlier answer " * 700)]
    context = LoopContext.create(models=[server.model_config(context_k=2)], tools=[big])
    server.add(reply(None, tool_call("big", i=0, size=2000)), reply("done"))
    compile_graph().invoke({"messages": [*session, HumanMessage("the task")]}, context=context)
    last = server.requests[-1].messages
    assert last[0] == {"role": "system", "content": "sys"}
    assert {"role": "user", "content": "the task"} in last
    assert {"role": "user", "content": "earlier question"} not in last  # an old unit, dropped
    assert sent_tokens(server.requests[-1]) <= 1500


def test_the_final_answer_and_the_confirmation_question_requests_fit_too(server: ScriptedServer) -> None:
    def wipe(path: str) -> str:
        """Wipe a path."""
        return path

    context = LoopContext.create(models=[server.model_config(context_k=4)], tools=[big, wipe],
                                 confirm_required=["wipe"])
    server.add(*[reply(None, tool_call("big", i=i, size=6000)) for i in range(3)],
               reply("final"))
    compile_graph().invoke(start("go", max_rounds=3), context=context)
    final = server.requests[-1]
    assert final.body["tool_choice"] == "none" and final.messages[-1]["role"] == "user"
    assert sent_tokens(final) <= 3000

    server.add(reply(None, tool_call("big", i=9, size=20000), tool_call("wipe", path="/x")),
               reply("May I wipe /x?"))
    compile_graph().invoke(start("go"), context=context)
    question = server.requests[-1]
    assert question.messages[-1]["content"] == "[AWAITING USER CONFIRMATION for wipe]"
    assert " chars omitted]" in question.messages[-2]["content"]  # shortened to make room
    assert sent_tokens(question) <= 3000
