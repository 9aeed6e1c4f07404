"""What nodes write to the ledger: tool-call rows, decision rows, inbox rows.

Each helper builds a row from what a node has at hand (its state, its `Send` job, the run's
config); the ledger (`graphloop.checkpointers.ledger`) stores it. Without a ledger in the
context nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from langgraph.config import get_config
from xxhash import xxh3_128_hexdigest

from graphloop.checkpointers import (
    CallStatus,
    DecisionEntry,
    InboxEntry,
    Ledger,
    ToolCallEntry,
    call_hash,
    dumps,
    now,
)
from graphloop.nodes.context import LoopContext
from graphloop.nodes.state import Decision, PendingCall, Policy, ToolJob

__all__ = [
    "LEDGER_KEY",
    "call_entry",
    "current_interrupt_id",
    "current_thread",
    "current_user",
    "decision_entries",
    "inbox_entry",
    "ledger_of",
    "not_rerun_message",
]

LEDGER_KEY = "__graphloop_ledger"
"""The run config key under which `compile_graph` binds the ledger of a saver graphloop opened.
LangGraph never writes configurable values whose key starts with `__` to a checkpoint."""


def run_settings() -> dict[str, Any]:
    """The `configurable` part of the running graph's config; empty when a node is called
    directly (outside a graph run, as in a unit test)."""
    try:
        return dict(get_config().get("configurable", {}))
    except RuntimeError:  # LangGraph: "Called get_config outside of a runnable context"
        return {}


def ledger_of(context: LoopContext) -> Ledger | None:
    """Where this run claims and audits: the context's ledger, else the one `compile_graph`
    bound to the graph's saver (`graphloop.checkpointers.ledger_for`)."""
    if context.ledger is not None:
        return context.ledger
    found = run_settings().get(LEDGER_KEY)
    return found if isinstance(found, Ledger) else None


def current_thread() -> str:
    """The thread id of the run this node belongs to ("" outside a graph run)."""
    return str(run_settings().get("thread_id", ""))


def current_user() -> str | None:
    """Who drives this run, when a LangGraph server authenticated them; else None."""
    user = run_settings().get("langgraph_auth_user_id")
    return str(user) if user else None


def current_interrupt_id() -> str:
    """The id `interrupt()` will give this node's first interrupt.

    LangGraph hashes the task's checkpoint namespace; its saved ids keep that form on
    purpose, and a test checks the two agree.
    """
    return xxh3_128_hexdigest(str(get_config().get("configurable", {})["checkpoint_ns"]).encode())


def call_entry(job: ToolJob, status: CallStatus, policy: Policy | None = None,
               thread_id: str | None = None) -> ToolCallEntry:
    """The audit row of one call (of the running thread unless `thread_id` is given);
    `policy` supplies the user when the job does not carry it."""
    return ToolCallEntry(
        thread_id=thread_id or current_thread(), call_id=job["id"], round=job.get("round", 0), tool=job["name"],
        args=job["args"], status=status, started_at=now(), duration_ms=None,
        model=job.get("model", ""),
        user_id=job.get("user_id", policy.get("user_id") if policy else None),
        user_role=job.get("user_role", policy["user_role"] if policy else ""),
        result_chars=None,
    )


def decision_entries(
    thread_id: str, interrupt_id: str, calls: Sequence[PendingCall], decisions: Sequence[Decision],
    decided_by: str | None,
) -> list[DecisionEntry]:
    """One row per decided call, with the hash of what was asked (and of an edit)."""
    rows: list[DecisionEntry] = []
    for call, decision in zip(calls, decisions, strict=True):
        action = decision.get("edited_action") or {}
        args = cast(dict[str, object], action.get("args") or {})
        edited = call_hash(str(action.get("name")), args) if decision["type"] == "edit" else None
        rows.append(DecisionEntry(
            thread_id=thread_id, call_id=call["id"], interrupt_id=interrupt_id, tool=call["name"],
            decision=decision["type"], decided_by=decided_by, decided_at=now(),
            call_hash=call_hash(call["name"], call["args"]), edited_hash=edited,
            payload=dumps(decision)))
    return rows


def inbox_entry(
    thread_id: str, interrupt_id: str, shown: Sequence[PendingCall], question: str, policy: Policy,
    waiting_since: str | None = None,
) -> InboxEntry:
    """The inbox row of a pause asking about `shown`."""
    return InboxEntry(
        thread_id=thread_id, interrupt_id=interrupt_id,
        calls=[{"id": p["id"], "name": p["name"], "args": p["args"]} for p in shown],
        question=question, waiting_since=waiting_since or now(), user_id=policy.get("user_id"),
        user_role=policy["user_role"])


def not_rerun_message(earlier: ToolCallEntry) -> str:
    """What the model is told about a call claimed before whose result was not kept."""
    name = earlier["tool"]
    if earlier["status"] in ("running", "unknown", "late"):
        return (f"Outcome unknown: the call to {name!r} was started before an interruption "
                "(a crash or a restart), so the action may have run; it was not retried. Check "
                "its effect before calling it again.")
    return (f"The call to {name!r} already ran (status {earlier['status']}), but its result "
            "was not kept; it was not run again. Call it again only if you need the result "
            "and running it twice is safe.")
