"""A worker for the crash test: runs (or continues) one thread until it finishes.

The parent kills it with SIGKILL at a random moment, then starts it again on the same SQLite
file; each tool appends to a log when it completes, so re-runs can be counted.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from graphloop.graph import ModelConfig, NotPausedError, Orchestrator, UnknownThreadError
from graphloop.graph.testing import ScriptedReply, reply, tool_call

CALLS_PER_ROUND = 2
TOTAL_CALLS = 8
TASK = "Process every document."
LOG = {"path": ""}


def step(n: int) -> str:
    """Process document n."""
    time.sleep(random.Random(n).uniform(0.01, 0.06))
    with open(LOG["path"], "a") as log:
        log.write(f"{n}\n")
        log.flush()
        os.fsync(log.fileno())
    return f"result {n}"


def model_reply(body: dict[str, Any]) -> ScriptedReply:
    """Deterministic in the conversation: the next batch of calls, or the final answer."""
    done = sum(1 for m in body["messages"] if m["role"] == "tool")
    if done >= TOTAL_CALLS:
        return reply(f"finished after {done} results")
    return reply(None, *(tool_call("step", n=n) for n in range(done, done + CALLS_PER_ROUND)))


def work(db: str, thread_id: str, api_url: str, log_path: str, ready: Any = None) -> None:
    """Continue the thread if it exists and is unfinished, else start it.

    `ready` (a multiprocessing Event) is set once imports are done, so the parent's kill
    timer measures the run itself.
    """
    LOG["path"] = log_path
    model = ModelConfig(label="crash", api_url=api_url, model_name="scripted", max_retries=5,
                        retry_base_delay=0.01, retry_max_delay=0.05)
    orch = Orchestrator([step], db=db, models=[model], max_rounds=20)
    if ready is not None:
        ready.set()
    try:
        orch.resume_sync(thread_id)
    except UnknownThreadError:
        orch.run_sync(TASK, thread_id=thread_id)
    except NotPausedError:
        pass  # it had already finished
