"""Retention: delete finished threads older than an age, and give the space back.

A thread is finished when it waits for nothing and its last message is an answer; paused
threads and threads stopped by a crash or an error are kept, whatever their age.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from langchain_core.messages import AnyMessage
from langgraph.checkpoint.base import BaseCheckpointSaver

from graphloop.checkpointers import Ledger
from graphloop.graph.builder import LoopGraph
from graphloop.nodes import is_answer

__all__ = ["PruneReport", "parse_age", "prune_threads"]


@dataclass(frozen=True)
class PruneReport:
    """What `prune` did."""

    deleted: list[str]
    """The thread ids deleted."""
    kept: int
    """Threads left: recent, paused, or unfinished."""


async def prune_threads(graph: LoopGraph, saver: BaseCheckpointSaver[str], ledger: Ledger,
                        older_than: timedelta, *, audit: bool) -> PruneReport:
    """Delete finished threads whose latest checkpoint is older than `older_than`."""
    cutoff = datetime.now(UTC) - older_than
    deleted: list[str] = []
    threads = await asyncio.to_thread(ledger.thread_ids)  # blocking I/O stays off the event loop
    for thread_id in threads:
        snapshot = await graph.aget_state({"configurable": {"thread_id": thread_id}})
        messages: list[AnyMessage] = snapshot.values.get("messages") or []
        finished = not snapshot.next and bool(messages) and is_answer(messages[-1])
        created = datetime.fromisoformat(snapshot.created_at) if snapshot.created_at else None
        if finished and created is not None and created < cutoff:
            await saver.adelete_thread(thread_id)
            await asyncio.to_thread(ledger.forget_thread, thread_id, audit=audit)
            deleted.append(thread_id)
    await asyncio.to_thread(ledger.reclaim_space)
    return PruneReport(deleted=deleted, kept=len(threads) - len(deleted))


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `45m` or `10s` as a timedelta (`ValueError` naming the forms otherwise).

    Example:
        >>> parse_age("36h")
        datetime.timedelta(days=1, seconds=43200)
    """
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise ValueError(f"age {text!r}: give a number and a unit, like 30d, 12h, 45m or 10s")
    return timedelta(**{units[unit]: int(number)})
