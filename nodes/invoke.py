"""Running one tool call within its timeout, and what becomes of a sync call that outlives it.

An async tool is cancelled at its timeout: it has stopped. A sync tool runs on a thread, and a
thread cannot be stopped: past its timeout it may still finish (a card charged after the model
read "timed out", then charged again when the model retried). So the model is told that its
outcome is unknown, and the call stays `late` in the audit until its outcome arrives
(`late_success`, `late_error`). Meanwhile the same call (same tool and arguments, in the same
thread) is not run again; the first identical call after it ended, in this process, is answered
with its outcome instead of running a second time.

Sync tools run on graphloop's own `TOOL_THREADS` threads, where LangChain would use asyncio's
default executor, which graphloop's sync nodes and asyncio's DNS lookups need too: tools that
hang stall only other sync tools. A call still waiting for a thread at its timeout never starts.

A tool's `sys.exit()` ends its call as an error; a `KeyboardInterrupt` propagates.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import ToolCall, ToolMessage
from langchain_core.tools import BaseTool

from graphloop.checkpointers import (
    CallStatus,
    Ledger,
    ThreadPool,
    ToolCallEntry,
    as_another_caller,
    call_hash,
)
from graphloop.nodes.audit import run_settings
from graphloop.nodes.context import LoopContext
from graphloop.nodes.state import ToolJob
from graphloop.nodes.toolbox import ToolExit, runs_on_a_thread

__all__ = ["TOOL_THREADS", "Outcome", "follow_late", "run_call"]

logger = logging.getLogger(__name__)

TOOL_THREADS = 32
"""Sync tool calls that run at once in one process; more wait for a thread."""
LATE_KEPT = 1000
"""Late calls this process remembers, for identical calls to wait for and be answered by."""

_tool_threads = ThreadPool("graphloop-tool", TOOL_THREADS)


@dataclass(frozen=True)
class Outcome:
    """What a call came to: the text the model reads and the audit status; for a sync call
    still running past its timeout, its future."""

    text: str
    status: CallStatus
    running: Future[Any] | None = None


@dataclass(frozen=True)
class _Late:
    call_id: str
    running: Future[Any]


_late: dict[tuple[str, str], _Late] = {}
_late_lock = threading.Lock()


async def run_call(job: ToolJob, context: LoopContext, late_in_ledger: ToolCallEntry | None = None) -> Outcome:
    """Run `job` once, unless the same call of this thread is `late` (in this process, or
    `late_in_ledger`: what `Ledger.late_twin` found when the call was claimed); never raises but
    for a `KeyboardInterrupt` or a cancelled run."""
    twin = _answer_for_twin(job, late_in_ledger)
    if twin is not None:
        return twin
    tool = context.tools.get(job["name"])
    assert tool is not None, "execute_tools answers calls to unknown tools"
    call = ToolCall(name=job["name"], args=job["args"], id=job["id"], type="tool_call")
    timeout = context.timeout_for(job["name"])
    # the tool runs as another caller, in a context of its own: a tool that runs this thread is refused
    own = contextvars.copy_context()
    own.run(as_another_caller)
    if runs_on_a_thread(tool):
        return await _on_a_thread(tool, call, timeout, own)
    return await asyncio.create_task(_on_the_loop(tool, call, timeout), context=own)


async def _on_the_loop(tool: BaseTool, call: ToolCall, timeout: float) -> Outcome:
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            result = await tool.ainvoke(call)
    except TimeoutError as exc:
        if not timer.expired():  # the tool's own TimeoutError
            return _failed(call["name"], exc)
        logger.warning("Tool %s timed out after %g s and was cancelled", call["name"], timeout)
        return Outcome(f"Tool error: {call['name']!r} did not finish within {timeout:g} s and was "
                       "cancelled; try again later, or with a smaller request.", "timeout")
    except (Exception, SystemExit) as exc:  # any tool failure is data for the model
        return _failed(call["name"], exc)
    return _read(call["name"], result)


async def _on_a_thread(tool: BaseTool, call: ToolCall, timeout: float, context: contextvars.Context) -> Outcome:
    """`tool.invoke` on a tool thread in `context`, as LangChain's `ainvoke` would run it on
    asyncio's."""
    name = call["name"]
    running = _tool_threads.executor().submit(context.run, tool.invoke, call)
    waiter = asyncio.wrap_future(running)
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        if not waiter.cancel():  # done: the outcome is read from `running`; mark it read here
            waiter.exception()
        running.cancel()  # still waiting for a thread (a timeout, a cancelled run): never starts
    if running.cancelled():
        logger.warning("Tool %s did not get a thread within %g s; not run", name, timeout)
        return Outcome(f"Tool error: {name!r} did not start within {timeout:g} s: all "
                       f"{TOOL_THREADS} tool threads were busy. It was not run; try again later.",
                       "timeout")
    if running.done():
        return _settled(name, running)
    logger.warning("Tool %s still running after its %g s timeout; outcome unknown", name, timeout)
    return Outcome(f"Outcome unknown: {name!r} did not finish within {timeout:g} s. It is still "
                   "running and cannot be stopped, so its action may yet take effect. Do not retry "
                   "it blindly: the same call will not run again while this one runs, and making "
                   "it again later gives you this call's result once it has finished.",
                   "late", running)


def _settled(name: str, running: Future[Any]) -> Outcome:
    """The outcome of a finished thread call; its `KeyboardInterrupt` is raised here."""
    exc = running.exception()
    if exc is None:
        return _read(name, running.result())
    if isinstance(exc, Exception | SystemExit):
        return _failed(name, exc)
    raise exc


def _failed(name: str, exc: BaseException) -> Outcome:
    if isinstance(exc, SystemExit | ToolExit):
        logger.warning("Tool %s called sys.exit(%r); its call ends as an error", name, exc.code)
        return Outcome(f"Tool error: {name!r} exited (sys.exit({exc.code!r})) without a result.", "error")
    logger.warning("Tool %s failed: %s", name, exc)
    return Outcome(f"Tool error: {exc}", "error")


def _read(name: str, result: Any) -> Outcome:
    # invoked with the whole call, a LangChain tool answers with a ToolMessage whose status
    # says whether the tool handled an error itself (MCP tools do)
    message = result if isinstance(result, ToolMessage) else ToolMessage(result, tool_call_id="")
    text = _as_text(message.content)
    if message.status == "error":
        logger.warning("Tool %s reported an error: %.200s", name, text)
        return Outcome(text, "error")
    logger.info("Tool %s → %d chars", name, len(text))
    return Outcome(text, "success")


def _as_text(content: str | list[str | dict[str, Any]]) -> str:
    """A tool message's content as the text the model reads; text blocks (MCP tools) joined."""
    if isinstance(content, str):
        return content
    if all(isinstance(b, dict) and b.get("type") == "text" for b in content):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return json.dumps(content, ensure_ascii=False, default=str)


# -- late calls ------------------------------------------------------------------------------


def _thread_id() -> str | None:
    thread_id = run_settings().get("thread_id")
    return str(thread_id) if thread_id is not None else None


def _key(thread_id: str, job: ToolJob) -> tuple[str, str]:
    return thread_id, call_hash(job["name"], job["args"])


def _answer_for_twin(job: ToolJob, found: ToolCallEntry | None) -> Outcome | None:
    """The answer for a call identical to a `late` one of this thread (this process's, or
    another's `found` in the ledger), which is then not run; None when there is none."""
    thread_id = _thread_id()
    if thread_id is None:
        return None
    late, ended = _take_late(thread_id, job)
    if late is not None:
        return _answer_from(job["name"], late, ended)
    if found is None:
        return None
    return Outcome(f"Not run: the same call to {job['name']!r} (call {found['call_id']}, started "
                   f"{found['started_at']}) ran past its timeout and its outcome is not known (it may "
                   "still be running, or its process stopped). It was not run a second time; check "
                   "its effect before anything else.", "refused")


def _take_late(thread_id: str, job: ToolJob) -> tuple[_Late | None, bool]:
    """This process's late call identical to `job`, and whether it ended; forgotten once it
    ended (its outcome is told once)."""
    with _late_lock:
        late = _late.get(key := _key(thread_id, job))
        ended = late is not None and late.running.done()
        if ended:
            del _late[key]
    return late, ended


def _answer_from(name: str, late: _Late, ended: bool) -> Outcome:
    if not ended:
        return Outcome(f"Not run: the same call to {name!r} (call {late.call_id}) is still running, "
                       "past its timeout; its outcome is unknown. It was not run a second time. "
                       "Make this call again later to get its result.", "refused")
    return Outcome(f"Not run again: the same call to {name!r} (call {late.call_id}) finished after "
                   f"its timeout; its result: {_late_outcome(name, late.running).text}", "refused")


def _late_outcome(name: str, running: Future[Any]) -> Outcome:
    try:
        return _settled(name, running)
    except BaseException as exc:  # a late KeyboardInterrupt has no caller left to reach
        return Outcome(f"Tool error: {name!r} was interrupted ({type(exc).__name__}).", "error")


def follow_late(ledger: Ledger | None, job: ToolJob, outcome: Outcome, started: float) -> None:
    """After a `late` call's claim is saved: hold identical calls until it ends, then record
    its outcome in the audit (from its own thread, as soon as it finishes)."""
    running, thread_id = outcome.running, _thread_id()
    if running is None or thread_id is None:
        return
    with _late_lock:
        _late[_key(thread_id, job)] = _Late(job["id"], running)
        for stale in list(_late)[:max(0, len(_late) - LATE_KEPT)]:
            del _late[stale]
    if ledger is not None and ledger.hold():  # open until the outcome is written
        running.add_done_callback(lambda done: _record_late(ledger, thread_id, job, done, started))


def _record_late(ledger: Ledger, thread_id: str, job: ToolJob, running: Future[Any], started: float) -> None:
    outcome = _late_outcome(job["name"], running)
    status: CallStatus = "late_success" if outcome.status == "success" else "late_error"
    logger.warning("Tool %s call %s finished after its timeout: %s", job["name"], job["id"], status)
    try:
        ledger.finish_late(thread_id, job["id"], status, duration_ms=(time.monotonic() - started) * 1000,
                           result_chars=len(outcome.text))
    except Exception:  # a callback's error would vanish silently
        logger.exception("Could not record the late outcome of tool %s call %s", job["name"], job["id"])
    finally:
        ledger.release()
