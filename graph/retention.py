"""Retention: delete finished threads older than an age, and give the space back.

A thread is finished when it waits for nothing and its last message is an answer; paused
threads and threads stopped by a crash or an error are kept, whatever their age, and so is a
thread a run holds (`graphloop.checkpointers.drivers`) or went on with since it was listed. Threads
graphloop did not create (another application's, in the same database) are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from graphloop.checkpointers import Ledger, ThreadBusyError, in_db_thread
from graphloop.graph.builder import LoopGraph
from graphloop.graph.ownership import own_threads
from graphloop.graph.snapshots import is_finished

__all__ = ["PruneReport", "parse_age", "prune_threads"]


@dataclass(frozen=True)
class PruneReport:
    """What `prune` did."""

    deleted: list[str]
    """The thread ids deleted."""
    kept: int
    """graphloop's threads left: recent, paused, or unfinished (another application's threads
    are neither deleted nor counted)."""


async def prune_threads(graph: LoopGraph, saver: BaseCheckpointSaver[str], ledger: Ledger,
                        older_than: timedelta, *, audit: bool) -> PruneReport:
    """Delete graphloop's finished threads whose latest checkpoint is older than `older_than`."""
    cutoff = datetime.now(UTC) - older_than
    deleted: list[str] = []
    threads = await own_threads(saver, ledger)
    for thread_id, latest in threads:
        if _older(latest, cutoff) and await _deleted(graph, saver, ledger, thread_id, cutoff, audit=audit):
            deleted.append(thread_id)
    await in_db_thread(ledger.reclaim_space)
    return PruneReport(deleted=deleted, kept=len(threads) - len(deleted))


def _older(latest: CheckpointTuple | None, cutoff: datetime) -> bool:
    return latest is not None and datetime.fromisoformat(latest.checkpoint["ts"]) < cutoff


async def _deleted(graph: LoopGraph, saver: BaseCheckpointSaver[str], ledger: Ledger, thread_id: str,
                   cutoff: datetime, *, audit: bool) -> bool:
    """Delete `thread_id` if it is still old and finished, holding it as a run would: a run in
    progress keeps it (prune waits for nobody), and a run that went on since the listing is
    seen in a fresh read."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    try:
        async with ledger.drivers.adrive(thread_id):
            if not _older(await saver.aget_tuple(config), cutoff):  # the age first: no history replayed
                return False
            if not is_finished(await graph.aget_state(config)):
                return False
            await saver.adelete_thread(thread_id)
            await in_db_thread(ledger.forget_thread, thread_id, audit=audit)
            return True
    except ThreadBusyError:
        return False


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
