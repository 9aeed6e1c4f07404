"""The routers and `execute_tools`' decisions, called directly as plain functions.

No compiled graph, no server, no database: each test builds a state dict and a
`Runtime(context=LoopContext.create(...))`, calls one node or router, and asserts the exact
update, node name or `Send` list it returns.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.runtime import Runtime
from langgraph.types import Send

from graphloop.checkpointers import DecisionEntry, Ledger, ToolCallEntry, call_hash
from graphloop.nodes import (
    Branch,
    Decision,
    LoopContext,
    LoopState,
    PendingCall,
    Policy,
    ToolJob,
    clarify,
    execute_tools,
    guardrail,
    route_after_execute,
    route_after_model,
    route_after_tools,
    run_tool,
)
from graphloop.nodes.abandon import DISMISSED
from graphloop.nodes.branches import BranchRouter
from graphloop.nodes.calls import CUT_OFF, UNPARSED
from graphloop.nodes.execute_tools import CHANGED, DENIED, NO_RECORD, runnable_now
from graphloop.nodes.state import apply_messages

THREAD = "direct"


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"{city}: sunny"


def delete_file(path: str) -> str:
    """Delete a file."""
    return f"deleted {path}"


def explode(reason: str) -> str:
    """Always raises."""
    raise RuntimeError(f"boom: {reason}")


async def nap(seconds: float) -> str:
    """Sleep, then say so."""
    await asyncio.sleep(seconds)
    return "rested"


TOOLS = [add, get_weather, delete_file, explode, nap]
AVAILABLE = "add, get_weather, delete_file, explode, nap"


@pytest.fixture(autouse=True)
def _run_config() -> Iterator[None]:
    """The run config LangGraph sets around every node. `ledger_of` reads it even when the
    context carries no ledger, so outside it `execute_tools` raises RuntimeError."""
    token = var_child_runnable_config.set({"configurable": {"thread_id": THREAD}})
    yield
    var_child_runnable_config.reset(token)


# -- builders ---------------------------------------------------------------------------------


def runtime(**settings: Any) -> Runtime[LoopContext]:
    return Runtime(context=LoopContext.create(tools=TOOLS, **settings))


def execute(state: LoopState, **settings: Any) -> dict[str, Any]:
    return execute_tools(state, runtime(**settings))


def policy(**changes: Any) -> Policy:
    base = Policy(user_role="user", tool_list=None, confirm_allow=[], confirm_deny=[], max_rounds=10,
                  respond_with_final=True, ask_model_to_confirm=True)
    return cast(Policy, {**base, **changes})


def call(name: str, args: dict[str, object], call_id: str) -> ToolCall:
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


ADD = call("add", {"a": 1, "b": 2}, "c1")
WEATHER = call("get_weather", {"city": "Oslo"}, "c2")
DELETE = call("delete_file", {"path": "/tmp/a"}, "c3")


def turn(*calls: ToolCall, message_id: str = "ai", **metadata: Any) -> AIMessage:
    return AIMessage("", tool_calls=list(calls), id=message_id, response_metadata=metadata)


def answer(tool_call: ToolCall, text: str = "ok") -> ToolMessage:
    return ToolMessage(text, tool_call_id=tool_call["id"], name=tool_call["name"], id=f"t-{tool_call['id']}")


def loop_state(*messages: AnyMessage, **fields: Any) -> LoopState:
    return cast(LoopState, {"messages": [HumanMessage("the task", id="task"), *messages], **fields})


def applied(state: LoopState, update: dict[str, Any]) -> LoopState:
    """`state` after LangGraph applied `update` (messages through their reducer)."""
    messages = apply_messages(state["messages"], update.get("messages", []))
    return cast(LoopState, {**state, **update, "messages": messages})


def refused(text: str, tool_call: ToolCall) -> ToolMessage:
    return ToolMessage(text, tool_call_id=tool_call["id"], name=tool_call["name"], status="error")


def waiting(tool_call: ToolCall, **fields: Any) -> PendingCall:
    return cast(PendingCall, {"id": tool_call["id"], "name": tool_call["name"], "args": tool_call["args"],
                              "allowed": ["approve", "edit", "reject"], **fields})


def decided(tool_call: ToolCall, decision: Decision) -> PendingCall:
    return waiting(tool_call, decision=decision)


def job(tool_call: ToolCall, **fields: Any) -> ToolJob:
    return cast(ToolJob, {"id": tool_call["id"], "name": tool_call["name"], "args": tool_call["args"],
                          "round": 0, "model": "", "user_id": None, "user_role": "user", **fields})


# -- route_after_model ------------------------------------------------------------------------


def test_route_after_model_sends_tool_calls_to_execute_tools_even_when_finish_reason_is_stop() -> None:
    assert route_after_model(loop_state(turn(ADD, finish_reason="stop"))) == "execute_tools"


def test_route_after_model_sends_an_answer_to_finalize() -> None:
    assert route_after_model(loop_state(AIMessage("3", id="ai"))) == "finalize"


def test_route_after_model_sends_a_call_with_unparsable_arguments_to_execute_tools() -> None:
    broken = AIMessage("", id="ai", invalid_tool_calls=[
        {"type": "invalid_tool_call", "id": "c1", "name": "add", "args": '{"a": 1', "error": None}])
    assert route_after_model(loop_state(broken)) == "execute_tools"


def test_route_after_model_sends_a_cut_off_reply_to_execute_tools_to_be_answered() -> None:
    cut = turn(call("add", {UNPARSED: '{"a": 1'}, "c1"), **{CUT_OFF: "the reply was cut off"})
    assert route_after_model(loop_state(cut)) == "execute_tools"


def test_runnable_now_gives_the_turns_calls_only_when_execute_tools_would_have_nothing_to_do() -> None:
    context = runtime(confirm_required=["delete_file"]).context
    plain = loop_state(turn(ADD, WEATHER), policy=policy())
    assert [c.id for c in runnable_now(plain, context) or []] == ["c1", "c2"]
    assert runnable_now(loop_state(turn(ADD, DELETE), policy=policy()), context) is None  # gated
    assert runnable_now(loop_state(turn(call("rm", {}, "c9")), policy=policy()), context) is None  # unknown
    assert runnable_now(loop_state(turn(ADD), policy=policy(confirm_deny=["add"])), context) is None  # the user's gate
    assert runnable_now(loop_state(turn(ADD), policy=policy(), pending=[waiting(DELETE)]), context) is None
    assert runnable_now(loop_state(turn(ADD), policy=policy(tool_list=["get_weather"])), context) is None  # the role's


# -- route_after_tools ------------------------------------------------------------------------


def test_route_after_tools_asks_the_model_to_phrase_the_question_for_an_undecided_call() -> None:
    state = loop_state(turn(DELETE), policy=policy(), pending=[waiting(DELETE)])
    assert route_after_tools(state) == "ask_confirmation"


def test_route_after_tools_pauses_at_once_when_the_model_is_not_asked_to_confirm() -> None:
    state = loop_state(turn(DELETE), policy=policy(ask_model_to_confirm=False), pending=[waiting(DELETE)])
    assert route_after_tools(state) == "interrupt_for_confirm"


def test_route_after_tools_goes_to_the_gate_before_the_round_limit() -> None:
    state = loop_state(turn(DELETE), policy=policy(max_rounds=2), rounds=2, pending=[waiting(DELETE)])
    assert route_after_tools(state) == "ask_confirmation"


@pytest.mark.parametrize(("rounds", "expected"), [(2, "compact"), (3, "finalize"), (4, "finalize")])
def test_route_after_tools_finalizes_once_the_round_limit_is_reached(rounds: int, expected: str) -> None:
    state = loop_state(turn(ADD), answer(ADD), policy=policy(max_rounds=3), rounds=rounds)
    assert route_after_tools(state) == expected


def test_route_after_tools_applies_the_default_limit_of_ten_rounds_without_a_policy() -> None:
    assert route_after_tools(loop_state(turn(ADD), answer(ADD), rounds=9)) == "compact"
    assert route_after_tools(loop_state(turn(ADD), answer(ADD), rounds=10)) == "finalize"


def test_route_after_tools_does_not_gate_calls_that_carry_a_decision() -> None:
    state = loop_state(turn(DELETE), answer(DELETE), policy=policy(),
                       pending=[decided(DELETE, {"type": "approve"})])
    assert route_after_tools(state) == "compact"


# -- route_after_execute ----------------------------------------------------------------------


def test_route_after_execute_sends_one_run_tool_job_per_call_in_order_with_its_audit_fields() -> None:
    state = loop_state(turn(ADD, WEATHER), rounds=4, answered_by="primary",
                       policy=policy(user_id="ann", user_role="admin"))
    extra = {"round": 4, "model": "primary", "user_id": "ann", "user_role": "admin"}
    assert route_after_execute(state) == [Send("run_tool", job(ADD, **extra)),
                                          Send("run_tool", job(WEATHER, **extra))]


def test_route_after_execute_does_not_send_a_call_waiting_in_pending() -> None:
    state = loop_state(turn(ADD, DELETE), pending=[waiting(DELETE)])
    assert route_after_execute(state) == [Send("run_tool", job(ADD))]


def test_route_after_execute_goes_to_the_gate_when_only_waiting_calls_are_left() -> None:
    state = loop_state(turn(ADD, DELETE), answer(ADD), pending=[waiting(DELETE)])
    assert route_after_execute(state) == "ask_confirmation"


def test_route_after_execute_does_not_resend_answered_calls_and_starts_the_next_round() -> None:
    state = loop_state(turn(ADD, WEATHER), answer(ADD), answer(WEATHER), rounds=1)
    assert route_after_execute(state) == "compact"


def test_route_after_execute_ends_the_run_when_the_person_dismissed_the_pause() -> None:
    state = loop_state(turn(DELETE), refused("Not run.", DELETE), dismissed=True, pending=[])
    assert route_after_execute(state) == "__end__"


def test_route_after_execute_finalizes_at_the_round_limit_when_every_call_is_answered() -> None:
    state = loop_state(turn(ADD), answer(ADD), rounds=3, policy=policy(max_rounds=3))
    assert route_after_execute(state) == "finalize"


# -- branch routing ---------------------------------------------------------------------------


def _node(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    return {}


def test_branch_router_takes_the_first_branch_whose_condition_holds() -> None:
    router = BranchRouter((Branch("never", lambda s: False, _node), Branch("first", lambda s: True, _node),
                           Branch("second", lambda s: True, _node)))
    assert router(loop_state(turn(ADD))) == "first"


@pytest.mark.parametrize(("reply", "expected"), [(turn(ADD), "execute_tools"),
                                                 (AIMessage("3", id="ai"), "finalize")])
def test_branch_router_falls_back_to_route_after_model_when_no_condition_holds(
    reply: AIMessage, expected: str
) -> None:
    router = BranchRouter((Branch("never", lambda s: False, _node),))
    assert router(loop_state(reply)) == expected


def test_guardrail_condition_sees_the_raw_text_of_unparsable_arguments() -> None:
    broken = AIMessage("", id="ai", invalid_tool_calls=[
        {"type": "invalid_tool_call", "id": "c1", "name": "run", "args": '{"cmd": "rm -rf /', "error": None}])
    assert guardrail(r"rm\s+-rf").condition(loop_state(broken))


def test_guardrail_condition_ignores_calls_already_answered() -> None:
    rm = call("get_weather", {"city": "rm -rf /"}, "c1")
    assert not guardrail(r"rm\s+-rf").condition(loop_state(turn(rm), answer(rm)))


def test_guardrail_node_answers_only_the_matching_calls() -> None:
    rm = call("delete_file", {"path": "rm -rf /"}, "c9")
    branch = guardrail(r"rm\s+-rf")
    update = branch.node(loop_state(turn(ADD, rm)), runtime())
    assert update == {"messages": [refused(
        "Blocked by guardrail: the call to 'delete_file' matches 'rm\\\\s+-rf' and was not run. "
        "Do not retry it; find another way or explain to the user.", rm)]}


def test_clarify_condition_holds_only_when_the_model_calls_ask_user() -> None:
    question = call("ask_user", {"question": "Which file?"}, "q1")
    assert clarify().condition(loop_state(turn(ADD, question)))
    assert not clarify().condition(loop_state(turn(ADD)))


# -- execute_tools: calls that run, calls that wait -------------------------------------------


def test_a_plain_call_changes_nothing_and_is_sent_to_run_tool() -> None:
    state = loop_state(turn(ADD))
    assert execute(state) == {}
    assert route_after_execute(state) == [Send("run_tool", job(ADD))]


def test_a_call_to_a_confirm_required_tool_waits_in_pending_with_the_default_decisions() -> None:
    state = loop_state(turn(ADD, DELETE))
    update = execute(state, confirm_required=["delete_file"])
    assert update == {"pending": [waiting(DELETE, allowed=["approve", "edit", "reject"])]}
    assert route_after_execute({**state, **update}) == [Send("run_tool", job(ADD))]


def test_a_gated_call_carries_the_decisions_allowed_for_its_tool() -> None:
    update = execute(loop_state(turn(DELETE)), confirm_required=["delete_file"],
                     allowed_decisions={"delete_file": ["approve", "respond"]})
    assert update == {"pending": [waiting(DELETE, allowed=["approve", "respond"])]}


def test_confirm_deny_gates_a_tool_that_confirm_required_does_not_name() -> None:
    update = execute(loop_state(turn(ADD), policy=policy(confirm_deny=["add"])))
    assert update == {"pending": [waiting(ADD)]}


def test_confirm_allow_lets_a_confirm_required_tool_run_without_asking() -> None:
    state = loop_state(turn(DELETE), policy=policy(confirm_allow=["delete_file"]))
    assert execute(state, confirm_required=["delete_file"]) == {}


def test_a_remembered_ask_rule_gates_and_a_remembered_allow_rule_lifts_the_gate() -> None:
    asks = loop_state(turn(ADD), policy=policy(remembered={"add": "ask"}))
    allows = loop_state(turn(DELETE), policy=policy(remembered={"delete_file": "allow"}))
    assert execute(asks) == {"pending": [waiting(ADD)]}
    assert execute(allows, confirm_required=["delete_file"]) == {}


def test_the_threads_pinned_gate_still_parks_a_call_in_a_context_without_confirm_required() -> None:
    gate = {"tools": ["add", "delete_file"], "gated": ["delete_file"],
            "decisions": {"delete_file": ["reject"]}}
    update = execute(loop_state(turn(DELETE), policy=policy(gate=gate)))
    assert update == {"pending": [waiting(DELETE, allowed=["reject"])]}


def test_a_call_already_waiting_is_not_written_again() -> None:
    state = loop_state(turn(DELETE), pending=[waiting(DELETE)])
    assert execute(state, confirm_required=["delete_file"]) == {}


def test_a_turn_whose_calls_are_all_answered_changes_nothing() -> None:
    assert execute(loop_state(turn(ADD), answer(ADD))) == {}


# -- execute_tools: calls answered without running --------------------------------------------


def test_an_unknown_tool_is_answered_with_the_available_tools() -> None:
    ghost = call("launch", {}, "c7")
    assert execute(loop_state(turn(ghost))) == {"messages": [refused(
        f"Error: unknown tool 'launch'. Available tools: {AVAILABLE}.", ghost)]}


def test_a_tool_outside_the_role_is_refused_naming_the_role_and_its_tools() -> None:
    state = loop_state(turn(DELETE), policy=policy(user_role="guest"))
    update = execute(state, roles={"guest": ["add", "get_weather"], "admin": "*"})
    assert update == {"messages": [refused(
        "Error: tool 'delete_file' is not available to role 'guest' in this run. "
        "Available tools: add, get_weather.", DELETE)]}


def test_a_tool_outside_the_runs_tool_list_is_refused() -> None:
    update = execute(loop_state(turn(WEATHER), policy=policy(tool_list=["add"])))
    assert update == {"messages": [refused(
        "Error: tool 'get_weather' is not available to role 'user' in this run. "
        "Available tools: add.", WEATHER)]}


def test_a_role_with_no_tools_is_told_none_are_available() -> None:
    update = execute(loop_state(turn(ADD), policy=policy(user_role="guest")), roles={"guest": []})
    assert update == {"messages": [refused(
        "Error: tool 'add' is not available to role 'guest' in this run. Available tools: none.", ADD)]}


def test_a_tool_outside_the_threads_pinned_tools_is_refused_though_the_context_allows_it() -> None:
    gate = {"tools": ["add"], "gated": [], "decisions": {}}
    update = execute(loop_state(turn(WEATHER), policy=policy(gate=gate)))
    assert update == {"messages": [refused(
        "Error: tool 'get_weather' is not available to role 'user' in this run. "
        "Available tools: add.", WEATHER)]}


def test_a_never_tool_is_refused_rather_than_parked_even_when_gated() -> None:
    state = loop_state(turn(DELETE), policy=policy(remembered={"delete_file": "never"}))
    assert execute(state, confirm_required=["delete_file"]) == {"messages": [refused(
        "Error: the user has chosen never to allow 'delete_file', so it was not run. "
        "Do not call it again; finish without it, or tell the user what it would do.", DELETE)]}


def test_naming_a_never_tool_in_confirm_allow_lets_it_run() -> None:
    state = loop_state(turn(DELETE), policy=policy(remembered={"delete_file": "never"},
                                                   confirm_allow=["delete_file"]))
    assert execute(state) == {}


def _parameters_of(message: AnyMessage) -> dict[str, Any]:
    return json.loads(str(message.content).split("matching its parameters: ", 1)[1])


def test_invalid_json_arguments_are_answered_with_the_error_the_raw_text_and_the_parameters() -> None:
    broken = AIMessage("", id="ai", invalid_tool_calls=[
        {"type": "invalid_tool_call", "id": "c1", "name": "add", "args": '{"a": 1', "error": None}])
    [reply] = execute(loop_state(broken))["messages"]
    assert (reply.tool_call_id, reply.name, reply.status) == ("c1", "add", "error")
    assert reply.content.startswith(
        "Error: your call to 'add' was not run: the arguments are not valid JSON (Expecting ',' "
        "delimiter at line 1 column 8). Arguments received: '{\"a\": 1'. Call 'add' again with a "
        "JSON object matching its parameters: ")
    assert _parameters_of(reply) == {"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                                     "required": ["a", "b"], "type": "object"}


def test_arguments_that_are_not_a_json_object_are_answered_with_an_error() -> None:
    array = call("add", {UNPARSED: "[1, 2]"}, "c1")
    [reply] = execute(loop_state(turn(array)))["messages"]
    assert reply.content.startswith(
        "Error: your call to 'add' was not run: the arguments must be a JSON object, got an array. "
        "Arguments received: '[1, 2]'.")
    assert reply.status == "error"


def test_a_broken_call_to_a_gated_tool_is_answered_not_parked() -> None:
    broken = call("delete_file", {UNPARSED: '"/tmp/a"'}, "c3")
    update = execute(loop_state(turn(broken)), confirm_required=["delete_file"])
    assert "pending" not in update
    [reply] = update["messages"]
    assert (reply.tool_call_id, reply.status) == ("c3", "error")
    assert reply.content.startswith(
        "Error: your call to 'delete_file' was not run: the arguments must be a JSON object, got a string.")


def test_every_call_of_a_cut_off_reply_is_answered_and_none_runs() -> None:
    reason = "the reply was cut off (finish_reason 'length') before the call was complete"
    whole = call("add", {UNPARSED: '{"a": 1, "b": 2}'}, "c1")
    partial = call("delete_file", {UNPARSED: '{"pa'}, "c3")
    cut = turn(whole, partial, **{CUT_OFF: reason})
    state = loop_state(cut)
    update = execute(state, confirm_required=["delete_file"])
    assert [(m.tool_call_id, m.status) for m in update["messages"]] == [("c1", "error"), ("c3", "error")]
    assert all(m.content.startswith(f"Error: your call to '{m.name}' was not run: {reason}. ")
               for m in update["messages"])
    assert "pending" not in update
    assert route_after_execute(applied(state, update)) == "compact"


def test_arguments_holding_half_a_surrogate_pair_are_refused() -> None:
    odd = call("get_weather", {"city": "caf\udce9"}, "c2")
    assert execute(loop_state(turn(odd))) == {"messages": [refused(
        "Error: your call to 'get_weather' was not run: its arguments hold \\udce9, half of a UTF-16 "
        "surrogate pair and not a character, which cannot be kept exactly. Call it again with text only.",
        odd)]}


def _same_call_turns(times: int) -> list[AnyMessage]:
    messages: list[AnyMessage] = []
    for n in range(1, times + 1):
        same = call("add", {"a": 1, "b": 2}, f"c{n}")
        messages += [turn(same, message_id=f"ai{n}"), answer(same)]
    return messages[:-1]  # the latest turn is not answered yet


def test_the_same_call_in_three_turns_in_a_row_is_refused_as_a_loop() -> None:
    update = execute(loop_state(*_same_call_turns(3)))
    assert update == {"messages": [refused(
        "Error: you have called 'add' with the same arguments 3 times in a row, so it was not run "
        "again: the result would not change. Use the results you already have, or call it with "
        "different arguments.", call("add", {}, "c3"))]}


@pytest.mark.parametrize(("messages", "repeat_limit"), [
    (_same_call_turns(2), 3),
    (_same_call_turns(3), 0),
    ([*_same_call_turns(2)[:-1], HumanMessage("again", id="h2"), turn(ADD, message_id="ai3")], 2),
], ids=["twice", "limit-off", "new-user-message"])
def test_a_repeated_call_runs_below_the_limit_when_the_limit_is_off_or_after_new_user_input(
    messages: list[AnyMessage], repeat_limit: int
) -> None:
    assert execute(loop_state(*messages), repeat_limit=repeat_limit) == {}


def test_a_mixed_turn_answers_parks_and_sends_each_call_by_its_own_rule() -> None:
    ghost = call("launch", {}, "c7")
    state = loop_state(turn(ADD, DELETE, ghost))
    update = execute(state, confirm_required=["delete_file"])
    unknown = refused(f"Error: unknown tool 'launch'. Available tools: {AVAILABLE}.", ghost)
    assert update == {"messages": [unknown], "pending": [waiting(DELETE)]}
    assert route_after_execute(applied(state, update)) == [Send("run_tool", job(ADD))]


# -- execute_tools: after the pause (decisions from the state; no ledger) ---------------------


def _resumed(*pending: PendingCall, calls: Sequence[ToolCall] = (DELETE,), **fields: Any) -> LoopState:
    return loop_state(turn(*calls), pending=list(pending), **fields)


def test_an_approved_call_leaves_pending_and_is_then_sent_to_run_tool() -> None:
    state = _resumed(decided(DELETE, {"type": "approve"}))
    update = execute(state, confirm_required=["delete_file"])
    assert update == {"pending": []}
    assert route_after_execute({**state, **update}) == [Send("run_tool", job(DELETE))]


def test_an_edited_call_rewrites_the_assistant_message_and_runs_with_the_edited_arguments() -> None:
    edit: Decision = {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "/tmp/b"}}}
    state = _resumed(decided(DELETE, edit))
    update = execute(state, confirm_required=["delete_file"])
    as_edited = call("delete_file", {"path": "/tmp/b"}, "c3")
    assert update == {"messages": [turn(as_edited)], "pending": []}
    after = applied(state, update)
    assert len(after["messages"]) == 2  # the assistant message is replaced (same id), not added
    assert route_after_execute(after) == [Send("run_tool", job(as_edited))]


@pytest.mark.parametrize(("decision", "text"), [
    ({"type": "reject"}, DENIED),
    ({"type": "reject", "message": "Not that file."}, f"{DENIED} Not that file."),
])
def test_a_rejected_call_is_answered_as_denied_with_the_persons_note(decision: Decision, text: str) -> None:
    update = execute(_resumed(decided(DELETE, decision)), confirm_required=["delete_file"])
    assert update == {"messages": [refused(text, DELETE)], "pending": []}


def test_a_respond_decision_is_the_result_the_model_reads_as_a_success() -> None:
    update = execute(_resumed(decided(DELETE, {"type": "respond", "message": "Already gone."})),
                     confirm_required=["delete_file"])
    assert update == {"messages": [ToolMessage("Already gone.", tool_call_id="c3", name="delete_file",
                                               status="success")], "pending": []}


def test_an_ignored_pause_answers_every_unanswered_call_as_not_run_and_ends() -> None:
    state = _resumed(decided(DELETE, {"type": "ignore"}), waiting(WEATHER), calls=(DELETE, WEATHER))
    update = execute(state, confirm_required=["delete_file", "get_weather"])
    assert update == {"messages": [refused(DISMISSED.format(name="delete_file"), DELETE),
                                   refused(DISMISSED.format(name="get_weather"), WEATHER)],
                      "pending": [], "dismissed": True}
    assert route_after_execute(applied(state, update)) == "__end__"


def test_an_approval_does_not_let_a_tool_outside_the_role_run() -> None:
    state = _resumed(decided(DELETE, {"type": "approve"}), policy=policy(user_role="guest"))
    update = execute(state, confirm_required=["delete_file"], roles={"guest": ["add"]})
    assert update == {"messages": [refused(
        "Error: tool 'delete_file' is not available to role 'guest' in this run. Available tools: add.",
        DELETE)], "pending": []}


def test_an_approval_does_not_let_a_never_tool_run() -> None:
    state = _resumed(decided(DELETE, {"type": "approve"}), policy=policy(remembered={"delete_file": "never"}))
    [reply] = execute(state, confirm_required=["delete_file"])["messages"]
    assert reply.content.startswith("Error: the user has chosen never to allow 'delete_file'")


def test_a_decided_call_runs_while_the_next_gated_call_of_the_turn_keeps_waiting() -> None:
    state = _resumed(decided(DELETE, {"type": "approve"}), waiting(WEATHER), calls=(DELETE, WEATHER),
                     policy=policy(one_call_per_pause=True))
    update = execute(state, confirm_required=["delete_file", "get_weather"])
    assert update == {"pending": [waiting(WEATHER)]}
    assert route_after_execute({**state, **update}) == [Send("run_tool", job(DELETE))]


# -- execute_tools: decisions on record in the ledger -----------------------------------------


class MemoryLedger(Ledger):
    """The ledger methods `execute_tools` uses, in memory: the decisions on record, the audit
    rows of calls answered without running, and the inbox."""

    def __init__(self, decisions: Sequence[DecisionEntry] = ()) -> None:
        self.recorded = list(decisions)
        self.calls: list[ToolCallEntry] = []
        self.left_inbox: list[str] = []

    def _transaction(self, *, write: bool = True) -> Any:
        raise AssertionError("no database in these tests")

    def reclaim_space(self) -> None:
        raise AssertionError("no database in these tests")

    def decisions_of(self, thread_id: str, call_ids: Sequence[str]) -> list[DecisionEntry]:
        return [d for d in self.recorded if d["thread_id"] == thread_id and d["call_id"] in call_ids]

    def record_call(self, entry: ToolCallEntry) -> None:
        self.calls.append(entry)

    def tool_call(self, thread_id: str, call_id: str) -> ToolCallEntry | None:
        return next((c for c in self.calls if (c["thread_id"], c["call_id"]) == (thread_id, call_id)), None)

    def remove_from_inbox(self, thread_id: str) -> None:
        self.left_inbox.append(thread_id)

    def audit(self) -> list[tuple[str, str, str]]:
        return [(c["call_id"], c["tool"], c["status"]) for c in self.calls]


def on_record(
    tool_call: ToolCall, decision: Decision, *, asked: dict[str, object] | None = None
) -> DecisionEntry:
    """The ledger's row for `decision`, made when the person was shown `asked` (default: the
    call's arguments)."""
    shown = tool_call["args"] if asked is None else asked
    return DecisionEntry(thread_id=THREAD, call_id=tool_call["id"], interrupt_id="i1",
                         tool=tool_call["name"], decision=decision["type"], decided_by="ann",
                         decided_at="2025-01-01T00:00:00.000+00:00",
                         call_hash=call_hash(tool_call["name"], shown), edited_hash=None,
                         payload=json.dumps(decision))


def execute_delete(decision_in_state: Decision, ledger: MemoryLedger) -> dict[str, Any]:
    """`execute_tools` after a pause on the gated DELETE call whose state carries `decision_in_state`."""
    state = _resumed(decided(DELETE, decision_in_state))
    return execute(state, confirm_required=["delete_file"], ledger=ledger)


def test_a_decision_in_the_state_that_the_ledger_never_recorded_runs_nothing() -> None:
    ledger = MemoryLedger()
    update = execute_delete({"type": "approve"}, ledger)
    assert update == {"messages": [refused(NO_RECORD, DELETE)], "pending": []}
    assert ledger.audit() == [("c3", "delete_file", "refused")]


def test_an_approved_call_whose_arguments_changed_since_it_was_shown_does_not_run() -> None:
    ledger = MemoryLedger([on_record(DELETE, {"type": "approve"}, asked={"path": "/tmp/other"})])
    update = execute_delete({"type": "approve"}, ledger)
    assert update == {"messages": [refused(CHANGED, DELETE)], "pending": []}


def test_the_ledgers_decision_wins_over_the_one_in_the_state() -> None:
    ledger = MemoryLedger([on_record(DELETE, {"type": "reject"})])
    update = execute_delete({"type": "approve"}, ledger)
    assert update == {"messages": [refused(DENIED, DELETE)], "pending": []}
    assert ledger.audit() == [("c3", "delete_file", "rejected")]


def test_an_approval_on_record_runs_the_call_and_takes_the_thread_out_of_the_inbox() -> None:
    ledger = MemoryLedger([on_record(DELETE, {"type": "approve"})])
    update = execute_delete({"type": "approve"}, ledger)
    assert update == {"pending": []}
    assert (ledger.left_inbox, ledger.calls) == ([THREAD], [])


def test_calls_answered_without_running_are_audited_with_their_status() -> None:
    ghost = call("launch", {}, "c7")
    respond: Decision = {"type": "respond", "message": "Sunny."}
    ledger = MemoryLedger([on_record(DELETE, {"type": "reject"}), on_record(WEATHER, respond)])
    state = _resumed(decided(DELETE, {"type": "reject"}), decided(WEATHER, respond),
                     calls=(DELETE, WEATHER, ghost))
    execute(state, confirm_required=["delete_file", "get_weather"], ledger=ledger)
    assert ledger.audit() == [("c3", "delete_file", "rejected"), ("c2", "get_weather", "responded"),
                              ("c7", "launch", "refused")]


def test_an_ignored_pause_is_audited_as_abandoned() -> None:
    ledger = MemoryLedger([on_record(DELETE, {"type": "ignore"})])
    update = execute_delete({"type": "ignore"}, ledger)
    assert update["dismissed"] is True
    assert (ledger.audit(), ledger.left_inbox) == ([("c3", "delete_file", "abandoned")], [THREAD])


# -- run_tool -----------------------------------------------------------------------------------


def _run(tool_job: ToolJob, **settings: Any) -> dict[str, list[ToolMessage]]:
    return asyncio.run(run_tool(tool_job, runtime(**settings)))


def test_run_tool_answers_with_the_tools_result_as_text() -> None:
    assert _run(job(ADD)) == {"messages": [ToolMessage("3", tool_call_id="c1", name="add", status="success")]}


def test_run_tool_turns_a_tool_exception_into_an_error_message() -> None:
    boom = call("explode", {"reason": "disk"}, "c5")
    assert _run(job(boom)) == {"messages": [refused("Tool error: boom: disk", boom)]}


def test_run_tool_cancels_an_async_tool_at_its_timeout_and_says_so() -> None:
    slow = call("nap", {"seconds": 5}, "c6")
    assert _run(job(slow), tool_timeouts={"nap": 0.05}) == {"messages": [refused(
        "Tool error: 'nap' did not finish within 0.05 s and was cancelled; try again later, or "
        "with a smaller request.", slow)]}
