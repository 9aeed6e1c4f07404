"""Branch nodes: registration, build-time checks, and the two shipped examples."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime
from langgraph.types import Command

from graphloop.graph import (
    Branch,
    ConfigurationError,
    LoopContext,
    LoopState,
    ModelConfig,
    build_graph,
    clarify,
    compile_graph,
    guardrail,
    memory_saver,
)
from graphloop.graph.testing import ScriptedServer, reply, tool_call
from graphloop.nodes.branches import ask_user

from conftest import CALLS, TOOLS
from test_loop import start, tool_messages

CONFIG: Any = {"configurable": {"thread_id": "branches"}}


def test_guardrail_blocks_matching_calls_and_lets_the_others_run(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(reply(None, tool_call("delete_file", path="/etc/passwd"), tool_call("add", a=1, b=2)),
               reply("I will not touch /etc."))
    graph = compile_graph(branches=[guardrail(r"/etc/")])
    out = graph.invoke(start("clean up", confirm_allow=["delete_file"]), context=context)
    assert CALLS == [("add", {"a": 1, "b": 2})]  # the matching call never ran
    blocked, added = tool_messages(out)
    assert blocked.content == ("Blocked by guardrail: the call to 'delete_file' matches '/etc/' and was "
                               "not run. Do not retry it; find another way or explain to the user.")
    assert added.content == "3"
    assert out["messages"][-1].content == "I will not touch /etc."


def test_guardrail_stays_out_of_the_way_when_nothing_matches(server: ScriptedServer, context: LoopContext) -> None:
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    out = compile_graph(branches=[guardrail(r"/etc/")]).invoke(start("add"), context=context)
    assert CALLS == [("add", {"a": 1, "b": 2})]
    assert out["messages"][-1].content == "3"


def test_clarify_pauses_with_the_models_question_and_feeds_back_the_answer(
    server: ScriptedServer, model: ModelConfig
) -> None:
    context = LoopContext.create(models=[model], tools=[*TOOLS, ask_user])
    server.add(reply(None, tool_call("ask_user", question="Which city?")))
    graph = compile_graph(memory_saver(), branches=[clarify()])
    out = graph.invoke(start("weather please"), CONFIG, context=context)
    [pause] = out["__interrupt__"]
    assert pause.value == {"question": "Which city?"}
    assert "ask_user" in server.requests[0].tool_names
    server.add(reply(None, tool_call("get_weather", city="Oslo")), reply("Oslo: sunny."))
    out = graph.invoke(Command(resume="Oslo"), CONFIG, context=context)
    assert [m.content for m in tool_messages(out)] == ["Oslo", "Oslo: sunny"]
    assert server.requests[1].messages[-1] == {"role": "tool", "tool_call_id": "call_1_0", "content": "Oslo"}
    assert out["messages"][-1].content == "Oslo: sunny."


def _count_replies(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    replies = sum(isinstance(m, AIMessage) for m in state["messages"])
    return {"messages": [AIMessage(f"{replies} replies so far; stopping here.")]}


def test_a_custom_branch_can_end_the_run(server: ScriptedServer, context: LoopContext) -> None:
    stop_early = Branch(name="stop_early", node=_count_replies, then="__end__",
                        condition=lambda state: "stop" in str(state["messages"][-1].content))
    server.add(reply("please stop"))
    out = compile_graph(branches=[stop_early]).invoke(start("go"), context=context)
    assert out["messages"][-1].content == "1 replies so far; stopping here."


def test_branches_are_checked_in_order_and_the_first_that_holds_wins(
    server: ScriptedServer, context: LoopContext
) -> None:
    server.add(reply(None, tool_call("delete_file", path="/etc/x")), reply("ok"))
    first, second = guardrail(r"/etc/", name="first"), guardrail(r"delete", name="second")
    out = compile_graph(branches=[first, second]).invoke(start("go", confirm_allow=["delete_file"]),
                                                         context=context)
    assert "matches '/etc/'" in str(tool_messages(out)[0].content)


def test_a_branch_appears_in_the_drawing(server: ScriptedServer) -> None:
    drawn = compile_graph(branches=[guardrail("x")]).get_graph().draw_mermaid()
    assert "call_model -.-> guardrail;" in drawn
    assert "guardrail --> execute_tools;" in drawn


@pytest.mark.parametrize(("branches", "message"), [
    ([guardrail("a"), guardrail("b")], r"branch 'guardrail' is registered twice; give each a unique name"),
    ([guardrail("a", name="compact")], r"branch 'compact' has the name of a built-in node"),
    ([Branch(name="b", condition=lambda s: False, node=_count_replies, then="nowhere")],
     r"branch 'b' continues at 'nowhere', which is not a node; use one of \['__end__', 'ask_confirmation', 'b',"),
])
def test_bad_registrations_are_refused_when_the_graph_is_built(branches: list[Branch], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build_graph(branches=branches)


def test_a_bad_guardrail_pattern_is_refused_at_once() -> None:
    import re

    with pytest.raises(re.error):
        guardrail("(unclosed")
