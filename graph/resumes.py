"""What a resume must get right before the graph moves: the thread's version and state, and
decisions that fit the pause they answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

from langchain_core.messages import AnyMessage
from langgraph.types import StateSnapshot

from graphloop.checkpointers import (
    InboxEntry,
    InvalidDecisionError,
    Ledger,
    NotPausedError,
    ThreadVersionError,
)
from graphloop.nodes import (
    Decision,
    HITLRequest,
    LoopContext,
    PendingCall,
    Policy,
    check_decisions,
    is_answer,
)
from graphloop.nodes.audit import inbox_entry
from graphloop.nodes.confirm import shown_calls
from graphloop.nodes.gate import allowed_tools
from graphloop.nodes.state import STATE_VERSION

__all__ = [
    "VERSION",
    "answer",
    "check_bound",
    "check_unfinished",
    "check_version",
    "inbox_entry_of",
    "is_finished",
    "recorded",
    "reply_to_question",
]

VERSION = version("graphloop")

logger = logging.getLogger(__name__)


def answer(
    snapshot: StateSnapshot, thread_id: str, expected: str | None, context: LoopContext,
    confirmed: bool | None, decisions: Sequence[Decision] | None,
) -> tuple[list[PendingCall], list[Decision]]:
    """The calls asked about and their decisions, checked against what the thread waits for."""
    if confirmed is None and decisions is None:
        raise InvalidDecisionError(
            f"thread {thread_id!r} is waiting for a decision; pass confirmed=True/False or "
            "decisions=[...]")
    check_bound(snapshot, thread_id, expected)
    policy: Policy = snapshot.values["policy"]
    shown = shown_calls(snapshot.values.get("pending", []), policy)
    answer = list(decisions) if decisions is not None else [
        Decision(type="approve" if confirmed else "reject") for _ in shown]
    return shown, check_decisions({"decisions": answer}, shown, allowed_tools(policy, context),
                                  context.tools)


def recorded(ledger: Ledger | None, snapshot: StateSnapshot, thread_id: str,
             context: LoopContext) -> list[Decision]:
    """Decisions recorded for this pause by a process that stopped before carrying them out,
    checked against what this process can carry out."""
    policy: Policy = snapshot.values["policy"]
    shown = shown_calls(snapshot.values.get("pending", []), policy)
    rows = {r["call_id"]: r for r in ledger.decisions(thread_id)} if ledger is not None else {}
    if not shown or any(p["id"] not in rows for p in shown):
        raise InvalidDecisionError(
            f"thread {thread_id!r} is waiting for a decision; pass confirmed=True/False or "
            "decisions=[...]")
    logger.warning("thread %s: carrying out the decisions recorded before an interruption", thread_id)
    decisions = [json.loads(rows[p["id"]]["payload"]) for p in shown]
    return check_decisions({"decisions": decisions}, shown, allowed_tools(policy, context), context.tools)


def check_version(snapshot: StateSnapshot, thread_id: str) -> None:
    policy: Mapping[str, Any] = snapshot.values.get("policy") or {}
    saved = int(policy.get("state_version", 1))
    if saved > STATE_VERSION:
        raise ThreadVersionError(
            f"thread {thread_id!r} was saved by graphloop {policy.get('graphloop_version', '?')} "
            f"(state version {saved}); this graphloop {VERSION} reads state versions up to "
            f"{STATE_VERSION}: resume it with graphloop {policy.get('graphloop_version', '?')} "
            "or newer")


def is_finished(snapshot: StateSnapshot) -> bool:
    """Whether the thread is done: nothing left to run, and its last message is an answer."""
    messages: Sequence[AnyMessage] = snapshot.values.get("messages", [])
    return not snapshot.next and bool(messages) and is_answer(messages[-1])


def check_unfinished(snapshot: StateSnapshot, thread_id: str, decided: bool) -> None:
    """Refuse to continue a thread that is not paused unless it stopped before its answer.

    A crash after every task of a step saved its result, but before the step's checkpoint,
    leaves no next task although the run has no answer: LangGraph applies those results and
    goes on when the thread is invoked again.
    """
    if is_finished(snapshot):
        raise NotPausedError(f"thread {thread_id!r} has finished; nothing to resume")
    if decided:
        raise NotPausedError(
            f"thread {thread_id!r} is not waiting for a decision: it stopped before finishing "
            "(a crash or an error); resume it without decisions to continue")


def inbox_entry_of(thread_id: str, snapshot: StateSnapshot) -> InboxEntry:
    """The inbox row of a paused thread, from its checkpoint."""
    policy: Policy = snapshot.values["policy"]
    request: HITLRequest = snapshot.interrupts[0].value
    shown = shown_calls(snapshot.values.get("pending", []), policy)
    return inbox_entry(thread_id, snapshot.interrupts[0].id, shown,
                       request["action_requests"][0]["description"], policy,
                       waiting_since=snapshot.created_at)



def check_bound(snapshot: StateSnapshot, thread_id: str, expected: str | None) -> None:
    """Refuse an answer meant for another pause than the one the thread waits at."""
    if expected is not None and expected != snapshot.interrupts[0].id:
        raise InvalidDecisionError(
            f"this decision answers pause {expected!r}, but thread {thread_id!r} now waits at "
            f"pause {snapshot.interrupts[0].id!r}; show the person the latest pause "
            "(Orchestrator.approvals.pending()) and decide that one")


def reply_to_question(snapshot: StateSnapshot, thread_id: str, expected: str | None,
                      options: Mapping[str, Any]) -> str:
    """The answer to a question pause (a branch such as `clarify`), checked."""
    check_bound(snapshot, thread_id, expected)
    reply = options.get("answer")
    if not isinstance(reply, str):
        raise InvalidDecisionError(
            f"thread {thread_id!r} waits for an answer to a question, not a decision; pass "
            "answer='...'")
    return reply
