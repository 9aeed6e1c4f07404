"""What a thread's latest checkpoint says: which graphloop wrote it, whether it is finished, and
whether it waits at the gate (and what its inbox row is).

Run, resume, retention, the served graph and the inbox all read a thread through these, so each
question about a snapshot has one answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AnyMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import StateSnapshot

from graphloop.checkpointers import InboxEntry, Ledger, ThreadPausedError, ThreadVersionError, in_db_thread
from graphloop.graph.ownership import VERSION, OwnedGraph, own_threads
from graphloop.graph.results import pending_of
from graphloop.nodes import STATE_VERSION, HITLRequest, inbox_entry, is_answer, policy_of, shown_calls

__all__ = ["VERSION", "at_gate", "check_new_task", "check_version", "inbox_entry_of", "is_finished", "relist_paused"]



def check_version(snapshot: StateSnapshot, thread_id: str) -> None:
    """Refuse a thread saved by a newer graphloop whose state this one cannot read."""
    policy: Mapping[str, Any] = snapshot.values.get("policy") or {}
    saved = int(policy.get("state_version", 1))
    if saved > STATE_VERSION:
        raise ThreadVersionError(
            f"thread {thread_id!r} was saved by graphloop {policy.get('graphloop_version', '?')} "
            f"(state version {saved}); this graphloop {VERSION} reads state versions up to "
            f"{STATE_VERSION}: resume it with graphloop {policy.get('graphloop_version', '?')} "
            "or newer", thread_id=thread_id, saved_version=saved, supported_version=STATE_VERSION)


def check_new_task(snapshot: StateSnapshot, thread_id: str) -> None:
    """Refuse a new task for a thread this graphloop cannot read, or one with unfinished work
    (stopped by a crash or an error, or waiting for an answer). A thread at the gate takes one:
    its waiting calls are answered as not run (`graphloop.nodes.abandon`)."""
    check_version(snapshot, thread_id)
    if snapshot.next and not at_gate(snapshot):
        raise ThreadPausedError(
            f"thread {thread_id!r} has unfinished work (stopped by a crash or an error, "
            "or waiting for the answer to a question); resume it first, or run this "
            "task with another thread_id", thread_id=thread_id)


def is_finished(snapshot: StateSnapshot) -> bool:
    """Whether the thread is done: nothing left to run, and its last message is an answer."""
    messages: Sequence[AnyMessage] = snapshot.values.get("messages", [])
    return not snapshot.next and bool(messages) and is_answer(messages[-1])


def at_gate(snapshot: StateSnapshot) -> bool:
    """Whether the thread waits at the confirmation gate (not a question, not a crash)."""
    return bool(snapshot.interrupts) and pending_of(snapshot.interrupts[0], "").kind == "confirm"


def inbox_entry_of(thread_id: str, snapshot: StateSnapshot) -> InboxEntry:
    """The inbox row of a thread paused at the gate, from its checkpoint."""
    policy = policy_of(snapshot.values)
    request: HITLRequest = snapshot.interrupts[0].value
    shown = shown_calls(snapshot.values.get("pending", []), policy)
    return inbox_entry(thread_id, snapshot.interrupts[0].id, shown,
                       request["action_requests"][0]["description"], policy,
                       waiting_since=snapshot.created_at)


async def relist_paused(graph: OwnedGraph, saver: BaseCheckpointSaver[str], ledger: Ledger) -> int:
    """List every thread of graphloop's that waits at the gate in the inbox, from its latest
    checkpoint, and no other; return how many wait."""
    waiting = 0
    for thread_id, _ in await own_threads(saver, ledger):  # another application's stay out
        snapshot = await graph.aget_state({"configurable": {"thread_id": thread_id}})
        if not at_gate(snapshot):
            await in_db_thread(ledger.remove_from_inbox, thread_id)
            continue
        await in_db_thread(ledger.add_to_inbox, inbox_entry_of(thread_id, snapshot))
        waiting += 1
    return waiting
