"""A worker for the race test: resumes whatever paused thread it is sent, at the same moment
as a second worker (both wait on one barrier), and reports how its resume ended.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from langgraph.types import Command

from graphloop.graph import (
    AlreadyDecidedError,
    ModelConfig,
    NotPausedError,
    Orchestrator,
    ResumeError,
    ThreadBusyError,
    compile_graph,
    open_ledger,
    open_saver,
)
from graphloop.graph.testing import ScriptedReply, reply, tool_call


def transfer_to(effects: Path) -> Any:
    def transfer(thread: str) -> str:
        """Transfer money for a thread (a side effect that must happen once)."""
        with effects.open("a") as log:  # O_APPEND: lines from both workers never interleave
            log.write(f"{thread}\n")
            log.flush()
            os.fsync(log.fileno())
        return "transferred"

    return transfer


def model_reply(body: dict[str, Any]) -> ScriptedReply:
    """A transfer for a new task; an answer once the tool has spoken."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return reply("done")
    return reply(None, tool_call("transfer", thread=last["content"]))


def orchestrator(db: str, api_url: str, effects: str) -> Orchestrator:
    model = ModelConfig(label="primary", api_url=api_url, model_name="scripted", max_retries=0)
    return Orchestrator([transfer_to(Path(effects))], confirm_required=["transfer"], db=db,
                        models=[model], ask_model_to_confirm=False)


def worker(name: str, db: str, api_url: str, effects: str, inbox: Any, outbox: Any, barrier: Any) -> None:
    """Resume each thread id received, in step with the other worker; report the outcome."""
    orch = orchestrator(db, api_url, effects)
    while (job := inbox.get()) is not None:
        thread_id, direct = job
        barrier.wait()
        try:
            if direct:  # straight to the graph: only the tool-call claim stands in the way
                resume_graph(orch, db, thread_id)
            else:
                orch.resume_sync(thread_id, confirmed=True, decided_by=name)
            outbox.put((thread_id, name, "resumed"))
        except AlreadyDecidedError:
            outbox.put((thread_id, name, "AlreadyDecidedError"))
        except NotPausedError:
            outbox.put((thread_id, name, "NotPausedError"))
        except ThreadBusyError:  # the other worker holds the thread at this moment
            outbox.put((thread_id, name, "ThreadBusyError"))
        except ResumeError as exc:
            outbox.put((thread_id, name, f"{type(exc).__name__}: {exc}"))


def resume_graph(orch: Orchestrator, db: str, thread_id: str) -> None:
    from dataclasses import replace

    with open_saver(db) as saver, open_ledger(db) as ledger:
        compile_graph(saver).invoke(Command(resume={"decisions": [{"type": "approve"}]}),
                                    {"configurable": {"thread_id": thread_id}},
                                    context=replace(orch.context, ledger=ledger), durability="sync")


def work_through(name: str, db: str, api_url: str, effects: str, thread_ids: list[str], barrier: Any,
                 outbox: Any) -> None:
    """Resume every thread of `thread_ids` in turn (the other workers hold the same list)."""
    orch = orchestrator(db, api_url, effects)
    barrier.wait()
    for thread_id in thread_ids:
        try:
            orch.resume_sync(thread_id, confirmed=True, decided_by=name)
            outbox.put((thread_id, name, "resumed"))
        except (AlreadyDecidedError, NotPausedError, ThreadBusyError) as exc:
            outbox.put((thread_id, name, type(exc).__name__))
    outbox.put((None, name, "done"))
