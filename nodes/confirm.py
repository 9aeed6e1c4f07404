"""The confirmation gate: `ask_confirmation` phrases the question, `interrupt_for_confirm` pauses.

The pause uses LangChain's human-in-the-loop request shape, and is resumed with
`Command(resume={"decisions": [...]})`, one decision per pending call, in order::

    {"type": "approve"}
    {"type": "edit", "edited_action": {"name": "send_email", "args": {...}}}
    {"type": "reject", "message": "optional text for the model"}
    {"type": "respond", "message": "the result the model reads; the tool does not run"}

Agent Inbox's response list (`[{"type": "accept" | "edit" | "response" | "ignore", "args": ...}]`)
is accepted too (`from_inbox`); `ignore` dismisses the pause: its calls are answered as not run
and the run ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from typing import Any, Literal, TypedDict, cast

from langchain_core.messages import ToolMessage
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, model_validator

from graphloop.checkpointers import ContextBudgetError, InvalidDecisionError, ModelCallError
from graphloop.nodes.audit import (
    current_interrupt_id,
    current_thread,
    current_user,
    decision_entries,
    inbox_entry,
    ledger_of,
)
from graphloop.nodes.compaction import fitted_view
from graphloop.nodes.context import LoopContext
from graphloop.nodes.fallback import call_models
from graphloop.nodes.limits import LimitReached, budget, spent_update
from graphloop.nodes.policy import allowed_tools, tool_schemas
from graphloop.nodes.state import (
    DECISION_TYPES,
    DEFAULT_DECISIONS,
    IGNORE,
    Decision,
    DecisionType,
    LoopState,
    LoopUpdate,
    PendingCall,
    Policy,
    policy_of,
)
from graphloop.nodes.toolbox import ToolBox
from graphloop.nodes.usage import ModelCall, recorded, with_earlier_spending

__all__ = [
    "ActionRequest",
    "HITLRequest",
    "ReviewConfig",
    "ask_confirmation",
    "check_decisions",
    "default_question",
    "from_inbox",
    "hitl_request",
    "interrupt_for_confirm",
    "shown_calls",
]

logger = logging.getLogger(__name__)

class ActionRequest(TypedDict):
    """One call asked about: LangChain's HITL action request."""

    name: str
    args: dict[str, object]
    description: str
    """The question: the review card's text (Agent Chat UI shows it under "Description")."""
    arguments: dict[str, object]
    """`args` again, under the name Agent Inbox reads them from (it shows them, and sends
    them back with its accept and edit)."""


class ReviewConfig(TypedDict):
    action_name: str
    allowed_decisions: list[DecisionType]


class HITLRequest(TypedDict):
    """The interrupt payload: what is asked, and which answers are allowed."""

    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]


def _describe(call: PendingCall) -> str:
    return f"{call['name']}({json.dumps(call['args'], ensure_ascii=False, default=str)})"


def default_question(pending: Sequence[PendingCall]) -> str:
    """The question used when the model is not asked, or fails to phrase one."""
    actions = "; ".join(_describe(p) for p in pending)
    return f"This action requires your explicit confirmation before it can proceed: {actions}"


def hitl_request(pending: Sequence[PendingCall], question: str) -> HITLRequest:
    """The interrupt payload for `pending`, each described by `question`."""
    return HITLRequest(
        action_requests=[
            ActionRequest(name=p["name"], args=p["args"], description=question, arguments=p["args"])
            for p in pending
        ],
        review_configs=[
            ReviewConfig(action_name=p["name"], allowed_decisions=allowed_of(p)) for p in pending
        ],
    )


def allowed_of(call: PendingCall) -> list[DecisionType]:
    """The decisions a person may make about `call` (approve, edit, reject unless it says)."""
    return call.get("allowed", list(DEFAULT_DECISIONS))


def shown_calls(pending: Sequence[PendingCall], policy: Policy) -> list[PendingCall]:
    """The calls the next pause asks about: all waiting ones, or the first in one-per-pause mode."""
    waiting = [p for p in pending if "decision" not in p]
    return waiting[:1] if policy.get("one_call_per_pause") else waiting


async def ask_confirmation(state: LoopState, runtime: Runtime[LoopContext]) -> LoopUpdate:
    """Ask the model (tools listed, `tool_choice` "none") to phrase the confirmation question."""
    pending = shown_calls(state.get("pending", []), policy_of(state))
    placeholders = [ToolMessage(f"[AWAITING USER CONFIRMATION for {p['name']}]", tool_call_id=p["id"])
                    for p in pending]
    context = runtime.context
    # the round's tools, with tool_choice "none": the request's prefix stays the round's
    tools = tool_schemas(policy_of(state), context)
    calls: list[ModelCall] = []
    state = await with_earlier_spending(state, ledger_of(context))
    try:
        update, view = fitted_view(state, context, placeholders)
        # not streamed: the question is shown once, in the pause's review card; it asks only
        # if it leaves room for a final answer (`graphloop.nodes.limits`)
        async with recorded(ledger_of(context), state, "question", budget(state, final_note=0)) as calls:
            reply, _ = await call_models(context.models, view, tools, stream=False, tool_choice="none")
    except (ModelCallError, ContextBudgetError, LimitReached) as exc:
        logger.warning("could not get a confirmation question from the model: %s", exc)
        return {**spent_update(state, calls), "question": default_question(pending)}
    return {**update, **spent_update(state, calls), "question": reply.text.strip() or default_question(pending)}


def check_decisions(
    response: object, pending: Sequence[PendingCall], allowed: Collection[str] | None = None,
    tools: ToolBox | None = None, *, thread_id: str | None = None,
) -> list[Decision]:
    """Validate a resume value against the pending calls; the decisions as they will be kept.

    Takes LangChain's `{"decisions": [...]}` and Agent Inbox's response list (see
    `from_inbox`). `allowed`, when given, is the run's tool set: a call is approved, and an
    edit goes, only to a tool in it. With `tools`, edited arguments are checked and converted
    by the tool's own schema. Raises `InvalidDecisionError` naming what is wrong (its
    `thread_id` is `thread_id`, the thread the decisions are for, when given).
    """
    try:
        return _checked(response, pending, allowed, tools)
    except InvalidDecisionError as exc:
        if exc.thread_id is None:
            exc.thread_id = thread_id  # the checks below know calls, not threads
        raise


def _checked(
    response: object, pending: Sequence[PendingCall], allowed: Collection[str] | None, tools: ToolBox | None,
) -> list[Decision]:
    if isinstance(response, list):
        response = {"decisions": from_inbox(cast(list[Any], response), pending)}
    if not isinstance(response, dict) or "decisions" not in response:
        raise InvalidDecisionError(
            f"resume value {response!r} is not of the form {{'decisions': [...]}}; "
            "resume with Command(resume={'decisions': [{'type': 'approve'}, ...]})"
        )
    given = cast(dict[str, Any], response)["decisions"]
    if _in_inbox_form(given):  # Agent Inbox's responses passed as decisions (Orchestrator.resume)
        given = from_inbox(cast(list[Any], given), pending)
    decisions = _dismissal(given, pending)
    if not isinstance(decisions, list) or len(cast(list[Any], decisions)) != len(pending):
        names = [p["name"] for p in pending]
        raise InvalidDecisionError(
            f"expected {len(pending)} decision(s), one per pending call {names!r}, "
            f"got {decisions!r}"
        )
    checked = [_check_one(d, p, allowed, tools) for d, p in zip(cast(list[Any], decisions), pending, strict=True)]
    if any(d["type"] == IGNORE for d in checked) and any(d["type"] != IGNORE for d in checked):
        raise InvalidDecisionError(
            "'ignore' dismisses the whole pause, so it cannot go with other decisions; send it alone, "
            "or decide each call")
    return checked


def _in_inbox_form(decisions: object) -> bool:
    """Whether `decisions` are Agent Inbox responses: an `accept` or `response`, or an `edit`
    carrying `args` instead of LangChain's `edited_action`."""
    if not isinstance(decisions, list):
        return False
    items = [cast(dict[str, Any], d) for d in cast(list[Any], decisions) if isinstance(d, dict)]
    return any(d.get("type") in ("accept", "response")
               or (d.get("type") == "edit" and "edited_action" not in d and "args" in d) for d in items)


def _kind(decision: object) -> object:
    return cast(dict[str, Any], decision).get("type") if isinstance(decision, dict) else None


def _dismissal(decisions: object, pending: Sequence[PendingCall]) -> object:
    """One `ignore` for a pause of several calls dismisses them all; anything else as given."""
    if not isinstance(decisions, list):
        return decisions
    given = cast(list[Any], decisions)
    if len(given) == 1 and _kind(given[0]) == IGNORE:
        dismissed: list[dict[str, Any]] = [{"type": IGNORE}] * len(pending)
        return dismissed
    return given


def from_inbox(responses: list[Any], pending: Sequence[PendingCall]) -> list[dict[str, Any]]:
    """Agent Inbox's resume list as LangChain decisions, one response per call shown.

    `accept` → approve, `edit` → edit, `response` → respond, `ignore` → dismiss the pause.
    An accept that carries arguments approves only the call as shown: arguments that differ
    from the call's once converted by the tool's schema (form text such as `"4"` does not
    differ) are refused, never run as an edit nobody chose.
    """
    dismissed = _dismissal(responses, pending)
    if dismissed is not responses:
        return cast(list[dict[str, Any]], dismissed)
    if len(responses) != len(pending):
        raise InvalidDecisionError(
            f"Agent Inbox answers one action at a time, but this pause shows {len(pending)} "
            f"calls {[p['name'] for p in pending]!r}; pause once per call (one_call_per_pause) "
            "for Agent Inbox, or resume with {'decisions': [...]}")
    return [_inbox_decision(r, p) for r, p in zip(responses, pending, strict=True)]


def _inbox_decision(response: object, call: PendingCall) -> dict[str, Any]:
    fields = cast(dict[str, Any], response) if isinstance(response, dict) else {}
    kind, args = fields.get("type"), fields.get("args")
    action = cast(dict[str, Any], args) if isinstance(args, dict) else {}
    if kind == "accept":
        if action.get("action", call["name"]) != call["name"]:
            raise InvalidDecisionError(
                f"accept for {call['name']!r} names the action {action.get('action')!r}: it answers another "
                "pause or call; show the person this pause and accept it. The thread still waits")
        shown = action.get("args")
        return {"type": "approve"} if shown is None or shown == call["args"] else {"type": "approve", _SHOWN: shown}
    if kind == "edit":
        return {"type": "edit", "edited_action": {"name": action.get("action", call["name"]), "args": action.get("args")}}
    if kind == "response":
        return {"type": "respond", "message": args}
    if kind == IGNORE:
        return {"type": IGNORE}
    raise InvalidDecisionError(
        f"Agent Inbox response {response!r} for {call['name']!r} has no valid 'type'; "
        "use accept, edit, response or ignore")


def _check_one(decision: object, call: PendingCall, allowed: Collection[str] | None,
               tools: ToolBox | None) -> Decision:
    fields = cast(dict[str, Any], decision) if isinstance(decision, dict) else {}
    kind = fields.get("type")
    if kind == IGNORE:
        return Decision(type=IGNORE)
    if kind not in DECISION_TYPES:
        raise InvalidDecisionError(
            f"decision {decision!r} for {call['name']!r} has no valid 'type'; "
            f"use one of {[*DECISION_TYPES, IGNORE]!r}"
        )
    permitted = allowed_of(call)
    if kind not in permitted:
        raise InvalidDecisionError(
            f"decision {kind!r} is not allowed for {call['name']!r}; allowed: {permitted!r}"
        )
    if kind == "approve":
        _check_runnable(call["name"], call, allowed, tools)
        if _SHOWN in fields:
            _check_shown(fields[_SHOWN], call, tools)
        return Decision(type="approve")
    if kind == "edit":
        return _check_edit(fields.get("edited_action"), call, allowed, tools)
    message = fields.get("message")
    if kind == "respond" and (not isinstance(message, str) or not message.strip()):
        raise InvalidDecisionError(
            f"respond for {call['name']!r} needs a non-empty 'message': the result the model reads")
    if message is not None and not isinstance(message, str):
        raise InvalidDecisionError(f"'message' for {call['name']!r} must be text, got {message!r}")
    return Decision(type=kind, message=message) if message else Decision(type=kind)


_SHOWN = "accepted_args"
"""The arguments an Agent Inbox accept carried, when they are not the call's own."""


def _check_shown(shown: object, call: PendingCall, tools: ToolBox | None) -> None:
    """Refuse an accept whose arguments are not the call's (an edit is sent as an edit)."""
    args: object = shown
    if tools is not None and isinstance(shown, dict):
        try:
            args = tools.coerce(call["name"], cast(dict[str, object], shown))
        except ValueError:
            pass  # refused below, naming both
    if args != call["args"]:
        raise InvalidDecisionError(
            f"accept for {call['name']!r} carries arguments {shown!r}, not the call's {call['args']!r}: "
            "accept approves the call as shown; send an edit to change it. The thread still waits")


def _check_runnable(name: str, call: PendingCall, allowed: Collection[str] | None,
                    tools: ToolBox | None) -> None:
    """Refuse a decision that would run `name` where this process cannot run it."""
    if tools is not None and tools.get(name) is None:
        raise InvalidDecisionError(
            f"cannot run {name!r} for call {call['id']!r}: this process has no tool {name!r} "
            f"(its tools: {list(tools.names)!r}); load it and resume again, or reject the call. "
            "The thread still waits")
    if allowed is not None and name not in allowed:
        raise InvalidDecisionError(
            f"cannot run {name!r} for call {call['id']!r}: this run may not use it; allowed tools: "
            f"{sorted(allowed)!r}; reject the call")


def _check_edit(action: object, call: PendingCall, allowed: Collection[str] | None,
                tools: ToolBox | None) -> Decision:
    edited = cast(dict[str, Any], action) if isinstance(action, dict) else {}
    name, args = edited.get("name"), edited.get("args")
    if not isinstance(name, str) or not isinstance(args, dict):
        raise InvalidDecisionError(
            f"edit for {call['name']!r} needs edited_action={{'name': str, 'args': dict}}, "
            f"got {action!r}"
        )
    if name != call["name"]:  # else an edit could run a tool under another tool's decisions
        raise InvalidDecisionError(
            f"edit for {call['name']!r} switches to tool {name!r}: an edit changes a call's "
            "arguments, not its tool; reject this call instead (a call to the other tool is asked "
            "about on its own)")
    _check_runnable(name, call, allowed, tools)
    if tools is not None:
        try:
            args = tools.coerce(name, cast(dict[str, object], args))
        except ValueError as exc:
            raise InvalidDecisionError(f"edit for {call['name']!r}: {exc}; the thread still waits") from None
    return Decision(type="edit", edited_action={"name": name, "args": args})


def _decided(call: PendingCall, decision: Decision) -> PendingCall:
    decided = call.copy()
    decided["decision"] = decision
    return decided


class _EditedAction(BaseModel):
    name: str
    args: dict[str, Any]


class _Decision(BaseModel):
    type: DecisionType | Literal["ignore"]
    edited_action: _EditedAction | None = None
    message: str | None = None


class _Answer(BaseModel):
    decisions: list[_Decision]


def answer_schema(shown: Sequence[PendingCall], allowed: Collection[str], tools: ToolBox) -> type[_Answer]:
    """The resume value's schema for this pause, checked (and edits converted) by
    `check_decisions`.

    Passed to `interrupt(response_schema=...)`: LangGraph shows it to clients as JSON Schema,
    and a resume that fails it raises before anything is saved, so the thread stays paused.
    """

    class Answer(_Answer):
        @model_validator(mode="before")
        @classmethod
        def _fits(cls, value: object) -> object:
            try:
                return {"decisions": check_decisions(value, shown, allowed, tools)}
            except InvalidDecisionError as exc:
                raise ValueError(str(exc)) from None  # pydantic reports ValueErrors

    return Answer


def interrupt_for_confirm(state: LoopState, runtime: Runtime[LoopContext]) -> LoopUpdate:
    """Pause with the HITL request; on resume, attach one decision to each call shown.

    `interrupt()` is the first thing with an effect on the graph: on resume the node runs
    again from its start. The inbox row written before it is idempotent, and is not written
    again once the pause is decided. A resume of a pause whose decisions were already carried
    out (a client resuming an earlier checkpoint: a second tab, a double submit) is refused
    here with `AlreadyDecidedError`, before anything runs or the thread moves.
    """
    context = runtime.context
    policy = policy_of(state)
    pending = state.get("pending", [])
    shown = shown_calls(pending, policy)
    question = state.get("question") or default_question(shown)
    ledger = ledger_of(context)
    # a ledger implies a checkpointed run, which has a thread id (a graph without one has neither)
    thread_id, interrupt_id = (current_thread(), current_interrupt_id()) if ledger is not None else ("", "")
    if ledger is not None:
        ledger.add_to_inbox(inbox_entry(thread_id, interrupt_id, shown, question, policy))
    answer = interrupt(hitl_request(shown, question), response_schema=answer_schema(
        shown, allowed_tools(policy, context), context.tools))
    decisions = [cast(Decision, d.model_dump(exclude_none=True)) for d in answer.decisions]
    if ledger is not None:  # the Orchestrator records first, with who decided
        ledger.refuse_carried_out(thread_id, [p["id"] for p in shown])
        ledger.record_decisions(decision_entries(thread_id, interrupt_id, shown, decisions,
                                                 decided_by=current_user()))
    decided = [_decided(p, d) for p, d in zip(shown, decisions, strict=True)]
    undecided = [p for p in pending if p not in shown]
    return {"pending": decided + undecided, "question": ""}
