"""The confirmation gate: `ask_confirmation` phrases the question, `interrupt_for_confirm` pauses.

The pause uses LangChain's human-in-the-loop request shape, and is resumed with
`Command(resume={"decisions": [...]})`, one decision per pending call, in order::

    {"type": "approve"}
    {"type": "edit", "edited_action": {"name": "send_email", "args": {...}}}
    {"type": "reject", "message": "optional text for the model"}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from typing import Any, TypedDict, cast

from langchain_core.messages import ToolMessage
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, model_validator

from graphloop.checkpointers.errors import ContextBudgetError, InvalidDecisionError, ModelCallError
from graphloop.nodes.audit import current_interrupt_id, current_thread, decision_entries, inbox_entry
from graphloop.nodes.compaction import fitted_view
from graphloop.nodes.config import LoopContext
from graphloop.nodes.fallback import call_models
from graphloop.nodes.state import (
    DECISION_TYPES,
    Decision,
    DecisionType,
    LoopState,
    PendingCall,
    Policy,
    policy_of,
)

__all__ = [
    "ActionRequest",
    "HITLRequest",
    "ReviewConfig",
    "ask_confirmation",
    "check_decisions",
    "default_question",
    "hitl_request",
    "interrupt_for_confirm",
    "shown_calls",
]

logger = logging.getLogger(__name__)

class ActionRequest(TypedDict):
    name: str
    args: dict[str, object]
    description: str


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
            ActionRequest(name=p["name"], args=p["args"], description=question) for p in pending
        ],
        review_configs=[
            ReviewConfig(action_name=p["name"], allowed_decisions=allowed_of(p)) for p in pending
        ],
    )


def allowed_of(call: PendingCall) -> list[DecisionType]:
    """The decisions a person may make about `call` (all three unless it says otherwise)."""
    return call.get("allowed", list(DECISION_TYPES))


def shown_calls(pending: Sequence[PendingCall], policy: Policy) -> list[PendingCall]:
    """The calls the next pause asks about: all waiting ones, or the first in one-per-pause mode."""
    waiting = [p for p in pending if "decision" not in p]
    return waiting[:1] if policy.get("one_call_per_pause") else waiting


async def ask_confirmation(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    """Ask the model, tools disabled, to phrase the confirmation question for the user."""
    pending = shown_calls(state.get("pending", []), policy_of(state))
    placeholders = [ToolMessage(f"[AWAITING USER CONFIRMATION for {p['name']}]", tool_call_id=p["id"])
                    for p in pending]
    try:
        update, view = fitted_view(state, runtime.context, placeholders)
        reply, _ = await call_models(runtime.context.models, view)
    except (ModelCallError, ContextBudgetError) as exc:
        logger.warning("could not get a confirmation question from the model: %s", exc)
        return {"question": default_question(pending)}
    return {**update, "question": reply.text.strip() or default_question(pending)}


def check_decisions(
    response: object, pending: Sequence[PendingCall], allowed: Collection[str] | None = None
) -> list[Decision]:
    """Validate a resume value against the pending calls; raise `InvalidDecisionError`.

    `allowed`, when given, is the run's tool set: an edit may not switch to a tool outside it.
    """
    if not isinstance(response, dict) or "decisions" not in response:
        raise InvalidDecisionError(
            f"resume value {response!r} is not of the form {{'decisions': [...]}}; "
            "resume with Command(resume={'decisions': [{'type': 'approve'}, ...]})"
        )
    decisions = cast(dict[str, Any], response)["decisions"]
    if not isinstance(decisions, list) or len(cast(list[Any], decisions)) != len(pending):
        names = [p["name"] for p in pending]
        raise InvalidDecisionError(
            f"expected {len(pending)} decision(s), one per pending call {names!r}, "
            f"got {decisions!r}"
        )
    return [_check_one(d, p, allowed) for d, p in zip(cast(list[Any], decisions), pending, strict=True)]


def _check_one(decision: object, call: PendingCall, allowed: Collection[str] | None) -> Decision:
    fields = cast(dict[str, Any], decision) if isinstance(decision, dict) else {}
    kind = fields.get("type")
    if kind not in DECISION_TYPES:
        raise InvalidDecisionError(
            f"decision {decision!r} for {call['name']!r} has no valid 'type'; "
            f"use one of {list(DECISION_TYPES)!r}"
        )
    permitted = allowed_of(call)
    if kind not in permitted:
        raise InvalidDecisionError(
            f"decision {kind!r} is not allowed for {call['name']!r}; allowed: {permitted!r}"
        )
    if kind == "edit":
        action = fields.get("edited_action")
        edited = cast(dict[str, Any], action) if isinstance(action, dict) else {}
        if not isinstance(edited.get("name"), str) or not isinstance(edited.get("args"), dict):
            raise InvalidDecisionError(
                f"edit for {call['name']!r} needs edited_action={{'name': str, 'args': dict}}, "
                f"got {action!r}"
            )
        if allowed is not None and edited["name"] not in allowed:
            raise InvalidDecisionError(
                f"edit for {call['name']!r} switches to tool {edited['name']!r}, which this run "
                f"may not use; allowed tools: {sorted(allowed)!r}"
            )
    return cast(Decision, decision)


def _decided(call: PendingCall, decision: Decision) -> PendingCall:
    decided = call.copy()
    decided["decision"] = decision
    return decided


class _EditedAction(BaseModel):
    name: str
    args: dict[str, Any]


class _Decision(BaseModel):
    type: DecisionType
    edited_action: _EditedAction | None = None
    message: str | None = None


class _Answer(BaseModel):
    decisions: list[_Decision]


def answer_schema(shown: Sequence[PendingCall], allowed: Collection[str]) -> type[_Answer]:
    """The resume value's schema for this pause, checked with `check_decisions`.

    Passed to `interrupt(response_schema=...)`: LangGraph shows it to clients as JSON Schema,
    and a resume that fails it raises before anything is saved, so the thread stays paused.
    """

    class Answer(_Answer):
        @model_validator(mode="before")
        @classmethod
        def _fits(cls, value: object) -> object:
            try:
                check_decisions(value, shown, allowed)
            except InvalidDecisionError as exc:
                raise ValueError(str(exc)) from None  # pydantic reports ValueErrors
            return value

    return Answer


def interrupt_for_confirm(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    """Pause with the HITL request; on resume, attach one decision to each call shown.

    `interrupt()` is the first thing with an effect on the graph: on resume the node runs
    again from its start. The inbox row written before it is idempotent, and is not written
    again once the pause is decided.
    """
    context = runtime.context
    policy = policy_of(state)
    pending = state.get("pending", [])
    shown = shown_calls(pending, policy)
    question = state.get("question") or default_question(shown)
    ledger = context.ledger
    # a ledger implies a checkpointed run, which has a thread id (a graph without one has neither)
    thread_id, interrupt_id = (current_thread(), current_interrupt_id()) if ledger is not None else ("", "")
    if ledger is not None:
        ledger.add_to_inbox(inbox_entry(thread_id, interrupt_id, shown, question, policy))
    answer = interrupt(hitl_request(shown, question),
                       response_schema=answer_schema(shown, context.allowed_tools(policy)))
    decisions = [cast(Decision, d.model_dump(exclude_none=True)) for d in answer.decisions]
    if ledger is not None:  # the Orchestrator records first, with who decided
        ledger.record_decisions(decision_entries(thread_id, interrupt_id, shown, decisions, decided_by=None))
    decided = [_decided(p, d) for p, d in zip(shown, decisions, strict=True)]
    undecided = [p for p in pending if p not in shown]
    return {"pending": decided + undecided, "question": ""}
