"""What a resume must get right before the graph moves: a pause to answer, and decisions that
fit it, recorded once.

`command_for` is the one entry: it reads the thread's latest snapshot and returns what to
invoke the graph with (the checked and recorded decisions, the answer to a question, or None
to continue a run stopped by a crash). Nothing is stored unless every check passed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.types import Command, StateSnapshot

from graphloop.checkpointers import (
    DbLike,
    InvalidDecisionError,
    Ledger,
    MissingToolsError,
    NotPausedError,
    UnknownThreadError,
    db_label,
    in_db_thread,
)
from graphloop.graph.options import ResumeOptions
from graphloop.graph.results import pending_of
from graphloop.graph.snapshots import check_version, is_finished
from graphloop.nodes import (
    Decision,
    LoopContext,
    PendingCall,
    allowed_tools,
    check_decisions,
    decision_entries,
    policy_of,
    shown_calls,
)

__all__ = ["command_for"]

logger = logging.getLogger(__name__)


async def command_for(
    thread_id: str, expected: str | None, options: ResumeOptions, db: DbLike,
    snapshot: StateSnapshot, context: LoopContext,
) -> Command[Any] | None:
    """What to invoke the graph with: the checked and recorded decisions, or None to continue.

    `expected` is the pause the caller answers (None: whichever the thread waits at); `db` is
    named in the message when the thread is not there.
    """
    if not snapshot.values:
        raise UnknownThreadError(
            f"no thread {thread_id!r} in the database {db_label(db)!r}; check the id and that this "
            "Orchestrator uses the same db as the run", thread_id=thread_id)
    check_version(snapshot, thread_id)
    if options.get("all_tools"):
        _check_all_tools(snapshot, thread_id, context)
    confirmed, decisions, reply = options.get("confirmed"), options.get("decisions"), options.get("answer")
    _check_shapes(thread_id, confirmed, decisions)
    decided = confirmed is not None or decisions is not None or reply is not None
    if not snapshot.interrupts:
        _check_unfinished(snapshot, thread_id, decided)
        return None
    if pending_of(snapshot.interrupts[0], thread_id).kind == "question":
        _check_bound(snapshot, thread_id, expected)
        return Command(resume=_reply_to_question(thread_id, reply))
    if reply is not None:
        raise InvalidDecisionError(
            f"thread {thread_id!r} waits for a decision on tool calls, not an answer; pass "
            "confirmed=True/False or decisions=[...]", thread_id=thread_id)
    ledger = context.ledger
    if not decided:
        return Command(resume={"decisions": await in_db_thread(_recorded, ledger, snapshot, thread_id, context)})
    _check_bound(snapshot, thread_id, expected)
    shown, chosen = _answer(snapshot, thread_id, context, confirmed, decisions)
    if ledger is not None:
        entries = decision_entries(thread_id, snapshot.interrupts[0].id, shown, chosen,
                                   options.get("decided_by"))
        await in_db_thread(ledger.claim_decisions, entries)
    return Command(resume={"decisions": chosen})


def _check_all_tools(snapshot: StateSnapshot, thread_id: str, context: LoopContext) -> None:
    """Refuse a process that lacks a tool the thread's pinned gate lets it use."""
    gate = policy_of(snapshot.values).get("gate")
    missing = sorted(set(gate["tools"]) - set(context.tools.names)) if gate else []
    if missing:
        raise MissingToolsError(
            f"thread {thread_id!r} may use tools this process does not have: {missing!r}; load them "
            "(graphloop.toml `tools`, or --tools module:function) and try again. Nothing was "
            "decided or run", thread_id=thread_id, missing=missing)


def _check_shapes(thread_id: str, confirmed: object, decisions: object) -> None:
    """Refuse a `confirmed` that is not True or False (the text "no" must not approve) and
    `decisions` that are not a list of decisions, before anything is read or stored."""
    if confirmed is not None and not isinstance(confirmed, bool):
        raise InvalidDecisionError(
            f"confirmed={confirmed!r} must be True (approve every call shown) or False (reject "
            "them)", thread_id=thread_id)
    if decisions is not None and (isinstance(decisions, str | bytes | Mapping) or not isinstance(decisions, Sequence)):
        raise InvalidDecisionError(
            f"decisions={decisions!r} must be a list with one decision per call shown, such as "
            '[{"type": "approve"}]', thread_id=thread_id)


def _answer(
    snapshot: StateSnapshot, thread_id: str, context: LoopContext, confirmed: bool | None,
    decisions: Sequence[Decision] | None,
) -> tuple[list[PendingCall], list[Decision]]:
    """The calls asked about and their decisions, checked against what the thread waits for."""
    policy = policy_of(snapshot.values)
    shown = shown_calls(snapshot.values.get("pending", []), policy)
    answer = list(decisions) if decisions is not None else [
        Decision(type="approve" if confirmed else "reject") for _ in shown]
    return shown, check_decisions({"decisions": answer}, shown, allowed_tools(policy, context),
                                  context.tools, thread_id=thread_id)


def _recorded(ledger: Ledger | None, snapshot: StateSnapshot, thread_id: str,
              context: LoopContext) -> list[Decision]:
    """Decisions recorded for this pause by a process that stopped before carrying them out,
    checked against what this process can carry out."""
    policy = policy_of(snapshot.values)
    shown = shown_calls(snapshot.values.get("pending", []), policy)
    rows = {r["call_id"]: r for r in ledger.decisions(thread_id)} if ledger is not None else {}
    if not shown or any(p["id"] not in rows for p in shown):
        raise InvalidDecisionError(
            f"thread {thread_id!r} is waiting for a decision; pass confirmed=True/False or "
            "decisions=[...]", thread_id=thread_id)
    logger.warning("thread %s: carrying out the decisions recorded before an interruption", thread_id)
    decisions = [json.loads(rows[p["id"]]["payload"]) for p in shown]
    return check_decisions({"decisions": decisions}, shown, allowed_tools(policy, context), context.tools,
                           thread_id=thread_id)


def _check_unfinished(snapshot: StateSnapshot, thread_id: str, decided: bool) -> None:
    """Refuse to continue a thread that is not paused unless it stopped before its answer.

    A crash after every task of a step saved its result, but before the step's checkpoint,
    leaves no next task although the run has no answer: LangGraph applies those results and
    goes on when the thread is invoked again.
    """
    if is_finished(snapshot):
        raise NotPausedError(f"thread {thread_id!r} has finished; nothing to resume", thread_id=thread_id)
    if decided:
        raise NotPausedError(
            f"thread {thread_id!r} is not waiting for a decision: it stopped before finishing "
            "(a crash or an error); resume it without decisions to continue", thread_id=thread_id)


def _check_bound(snapshot: StateSnapshot, thread_id: str, expected: str | None) -> None:
    """Refuse an answer meant for another pause than the one the thread waits at."""
    if expected is not None and expected != snapshot.interrupts[0].id:
        raise InvalidDecisionError(
            f"this decision answers pause {expected!r}, but thread {thread_id!r} now waits at "
            f"pause {snapshot.interrupts[0].id!r}; show the person the latest pause "
            "(Orchestrator.approvals.pending()) and decide that one", thread_id=thread_id)


def _reply_to_question(thread_id: str, reply: object) -> str:
    """The answer to a question pause (a branch such as `clarify`), checked."""
    if not isinstance(reply, str):
        raise InvalidDecisionError(
            f"thread {thread_id!r} waits for an answer to a question, not a decision; pass "
            "answer='...'", thread_id=thread_id)
    return reply
