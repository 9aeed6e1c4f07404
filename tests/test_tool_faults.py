"""Tools that time out, hang, exit or are interrupted: through real HTTP and a real SQLite file.

Each test runs the real loop (the scripted server speaks Chat Completions to the openai and
langchain-openai clients) and reads what the model was sent and what the audit recorded.
Tools block on events rather than sleeping, and waits have generous bounds: a failure shows as
a wrong answer, not as a slow one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from graphloop.graph import ModelConfig, Orchestrator, OrchestratorResult
from graphloop.graph.testing import ScriptedServer, reply, tool_call
from graphloop.nodes.invoke import TOOL_THREADS

WAIT_S = 60.0
"""Bound for what takes well under a second: long enough for a loaded 2-core machine."""


def in_a_thread(work: Callable[[], Any]) -> Any:
    """`work()` on a thread of its own: its result or the exception it raised; a hang fails the
    test instead of hanging the suite."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # noqa: BLE001  # KeyboardInterrupt included: it is the result
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(WAIT_S)
    assert outcome, f"still waiting after {WAIT_S:g} s: the sync wrapper hangs"
    return outcome[0]


def sent_tool_texts(server: ScriptedServer) -> list[str]:
    """What each request told the model about its last tool call."""
    return [r.messages[-1]["content"] for r in server.requests if r.messages[-1]["role"] == "tool"]


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


# -- 2: a sync tool past its timeout --------------------------------------------------------


class Card:
    """A card that counts its charges; a charge waits until the test lets it finish."""

    def __init__(self) -> None:
        self.charges: list[int] = []
        self.may_finish = threading.Event()

    def charge_card(self, card: str, amount: int) -> str:
        """Charge a card."""
        self.charges.append(amount)
        assert self.may_finish.wait(WAIT_S)
        return f"charged {amount} to {card}"


def test_a_sync_tool_past_its_timeout_is_unknown_not_repeated_and_audited_when_it_ends(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path,
) -> None:
    card = Card()
    orch = Orchestrator([card.charge_card], db=sqlite_db, models=[model], tool_timeout=1)
    charge = tool_call("charge_card", card="c1", amount=5)
    server.add(reply(None, charge), reply(None, charge), reply("not sure yet"))
    first = orch.run_sync("charge c1 5")
    assert card.charges == [5]
    unknown, waiting = sent_tool_texts(server)
    assert unknown.startswith("Outcome unknown: 'charge_card' did not finish within 1 s")
    assert "Do not retry it blindly" in unknown and "abandoned" not in unknown
    assert waiting.startswith("Not run: the same call to 'charge_card' (call call_1_0) is still running")
    assert [c["status"] for c in orch.approvals.tool_calls(first.thread_id)] == ["late", "refused"]

    card.may_finish.set()
    wait_until(lambda: orch.approvals.tool_calls(first.thread_id)[0]["status"] == "late_success")
    late = orch.approvals.tool_calls(first.thread_id)[0]
    assert late["result_chars"] == len("charged 5 to c1") and (late["duration_ms"] or 0) > 1000

    # the model asks again: it gets the first call's result, and the card is not charged twice;
    # asked once more, knowing the outcome, the call runs
    server.add(reply(None, charge), reply(None, charge), reply("charged"))
    orch.run_sync("did it work?", thread_id=first.thread_id)
    assert sent_tool_texts(server)[2:] == [
        "Not run again: the same call to 'charge_card' (call call_1_0) finished after its timeout; "
        "its result: charged 5 to c1",
        "charged 5 to c1"]
    assert card.charges == [5, 5]


def test_a_sync_call_still_waiting_for_a_thread_at_its_timeout_never_runs(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path,
) -> None:
    release, ran = threading.Event(), list[int]()

    def hold(n: int) -> str:
        """Hold a tool thread."""
        ran.append(n)
        release.wait(WAIT_S)
        return f"held {n}"

    orch = Orchestrator([hold], db=sqlite_db, models=[model], tool_timeout=3)
    server.add(reply(None, *[tool_call("hold", n=n) for n in range(TOOL_THREADS + 1)]), reply("busy"))
    try:
        result = orch.run_sync("hold them all")
    finally:
        release.set()
    texts = [m["content"] for m in server.requests[-1].messages if m["role"] == "tool"]
    assert sum(t.startswith("Outcome unknown: 'hold' did not finish within 3 s") for t in texts) == TOOL_THREADS
    assert [t for t in texts if not t.startswith("Outcome unknown")] == [
        f"Tool error: 'hold' did not start within 3 s: all {TOOL_THREADS} tool threads were busy. "
        "It was not run; try again later."]
    wait_until(lambda: sorted(c["status"] for c in orch.approvals.tool_calls(result.thread_id))
               == ["late_success"] * TOOL_THREADS + ["timeout"])
    # freed threads take queued calls first: the call that never started would run before this one
    server.add(reply(None, tool_call("hold", n=-1)), reply("held"))
    orch.run_sync("hold one more", thread_id=result.thread_id)
    assert len(ran) == TOOL_THREADS + 1 and ran[-1] == -1


def test_an_async_tool_past_its_timeout_is_cancelled_and_says_so(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path,
) -> None:
    finished: list[int] = []

    async def lookup(n: int) -> str:
        """Look something up, slowly."""
        await asyncio.sleep(WAIT_S)
        finished.append(n)
        return "found"

    orch = Orchestrator([lookup], db=sqlite_db, models=[model], tool_timeouts={"lookup": 0.2})
    server.add(reply(None, tool_call("lookup", n=1)), reply("gave up"))
    result = orch.run_sync("look up 1")
    assert sent_tool_texts(server) == [
        "Tool error: 'lookup' did not finish within 0.2 s and was cancelled; try again later, "
        "or with a smaller request."]
    assert [c["status"] for c in orch.approvals.tool_calls(result.thread_id)] == ["timeout"]
    assert finished == []


# -- 6: hung sync tools and everybody else ---------------------------------------------------


def test_hung_sync_tools_do_not_stall_an_unrelated_run(
    server: ScriptedServer, model: ModelConfig, tmp_path: Path,
) -> None:
    hung = min(32, (os.cpu_count() or 1) + 4) + 2  # more than asyncio's default executor holds
    release, started = threading.Event(), list[int]()

    def hang(n: int) -> str:
        """Hang until released."""
        started.append(n)
        release.wait(WAIT_S)
        return "released"

    async def note(text: str) -> str:
        """Take a note."""
        return f"noted {text}"

    with ScriptedServer(strict=True) as other:
        server.add(reply(None, *[tool_call("hang", n=n) for n in range(hung)]), reply("done"))
        other.add(reply(None, tool_call("note", text="hi")), reply("noted"))
        stuck = Orchestrator([hang], db=tmp_path / "stuck.db", models=[model])
        free = Orchestrator([note], db=tmp_path / "free.db", models=[other.model_config(label="other")])

        async def both() -> tuple[OrchestratorResult, bool]:
            hanging = asyncio.create_task(stuck.run("hang"))
            try:
                deadline = time.monotonic() + WAIT_S
                while len(started) < hung - 2:  # asyncio's default executor is full by now
                    assert time.monotonic() < deadline and not hanging.done()
                    await asyncio.sleep(0.02)
                unrelated = await asyncio.wait_for(free.run("note hi"), WAIT_S / 2)
                return unrelated, release.is_set()
            finally:
                release.set()
                await hanging

        unrelated, released_first = asyncio.run(both())
        other.assert_all_used()
    assert unrelated.response == "noted" and not released_first
    assert [c["status"] for c in free.approvals.tool_calls(unrelated.thread_id)] == ["success"]


# -- 7: a tool that exits or is interrupted, and sync wrappers inside tools -------------------


def exits(code: int) -> str:
    """Exit."""
    sys.exit(code)


async def exits_async(code: int) -> str:
    """Exit, asynchronously."""
    sys.exit(code)


@pytest.mark.parametrize("tool", [exits, exits_async])
def test_sys_exit_in_a_tool_is_a_tool_error_and_run_sync_goes_on(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path, tool: Callable[[int], Any],
) -> None:
    orch = Orchestrator([tool], db=sqlite_db, models=[model])
    name = tool.__name__
    server.add(reply(None, tool_call(name, code=3)), reply("it exited"), reply("still here"))
    result = in_a_thread(lambda: orch.run_sync("exit 3"))
    assert isinstance(result, OrchestratorResult) and result.response == "it exited"
    assert sent_tool_texts(server) == [f"Tool error: {name!r} exited (sys.exit(3)) without a result."]
    assert [c["status"] for c in orch.approvals.tool_calls(result.thread_id)] == ["error"]
    assert in_a_thread(lambda: orch.run_sync("hello")).response == "still here"


def test_sys_exit_in_an_async_tool_does_not_stop_the_callers_own_event_loop(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path,
) -> None:
    orch = Orchestrator([exits_async], db=sqlite_db, models=[model])
    server.add(reply(None, tool_call("exits_async", code=3)), reply("it exited"))
    result = in_a_thread(lambda: asyncio.run(orch.run("exit 3")))
    assert isinstance(result, OrchestratorResult) and result.response == "it exited"
    assert sent_tool_texts(server) == ["Tool error: 'exits_async' exited (sys.exit(3)) without a result."]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_keyboard_interrupt_in_a_tool_reaches_the_caller_and_later_runs_work(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path, asynchronous: bool,
) -> None:
    def interrupted(n: int) -> str:
        """Get interrupted."""
        raise KeyboardInterrupt

    async def interrupted_async(n: int) -> str:
        """Get interrupted."""
        raise KeyboardInterrupt

    tool = interrupted_async if asynchronous else interrupted
    orch = Orchestrator([tool], db=sqlite_db, models=[model])
    server.add(reply(None, tool_call(tool.__name__, n=1, id="c1")))
    assert isinstance(in_a_thread(lambda: orch.run_sync("go", thread_id="t1")), KeyboardInterrupt)
    # the process goes on: the interrupted call is not run again, and the model is told so
    server.add(reply("understood"), reply("fine"))
    resumed = in_a_thread(lambda: orch.resume_sync("t1"))
    assert isinstance(resumed, OrchestratorResult) and resumed.response == "understood"
    assert sent_tool_texts(server)[0].startswith(f"Outcome unknown: the call to {tool.__name__!r}")
    assert [c["status"] for c in orch.approvals.tool_calls("t1")] == ["unknown"]
    assert in_a_thread(lambda: orch.run_sync("and now?")).response == "fine"


def test_an_async_tool_can_run_another_orchestrator_with_run_sync(
    server: ScriptedServer, model: ModelConfig, tmp_path: Path,
) -> None:
    with ScriptedServer(strict=True) as inner_server:
        inner = Orchestrator([], db=tmp_path / "inner.db", models=[inner_server.model_config(label="inner")])

        async def ask_expert(question: str) -> str:
            """Ask another agent."""
            return inner.run_sync(question).response  # blocking on purpose: a sync API in async code

        outer = Orchestrator([ask_expert], db=tmp_path / "outer.db", models=[model])
        inner_server.add(reply("42"))
        server.add(reply(None, tool_call("ask_expert", question="answer?")), reply("the expert says 42"))
        result = in_a_thread(lambda: outer.run_sync("ask the expert"))
        inner_server.assert_all_used()
    assert isinstance(result, OrchestratorResult) and result.response == "the expert says 42"
    assert sent_tool_texts(server) == ["42"]


def test_a_call_left_late_by_another_process_is_not_run_again(
    server: ScriptedServer, model: ModelConfig, sqlite_db: Path,
) -> None:
    """The ledger's twin, found in the same trip to the database thread as the claim."""
    from graphloop.graph import open_ledger

    with open_ledger(sqlite_db) as ledger:  # another process's call, still running past its timeout
        assert ledger.claim_call({
            "thread_id": "t", "call_id": "elsewhere", "round": 1, "tool": "charge_card",
            "args": {"card": "c1", "amount": 5}, "status": "running", "started_at": "2026-12-01T00:00:00+00:00",
            "duration_ms": None, "model": "primary", "user_id": None, "user_role": "user", "result_chars": None}) is None
        ledger.finish_call("t", "elsewhere", "late")
    card = Card()
    orch = Orchestrator([card.charge_card], db=sqlite_db, models=[model])
    server.add(reply(None, tool_call("charge_card", card="c1", amount=5)), reply("not sure"))
    orch.run_sync("charge c1 5", thread_id="t")
    [answer] = sent_tool_texts(server)
    assert answer.startswith("Not run: the same call to 'charge_card' (call elsewhere, started 2026-12-01")
    assert card.charges == []
    assert [c["status"] for c in orch.approvals.tool_calls("t")] == ["late", "refused"]
