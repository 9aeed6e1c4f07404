"""At most once under a race: two OS processes resume the same paused thread at the same moment.

Each trial pauses a new thread at a gated `transfer`, then two worker processes resume it
after waiting on one barrier. The transfer's side effect (a line in a shared file) must happen
exactly once per trial, and the loser must be told why it lost.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from graphloop.graph.testing import ScriptedServer

import race_child

TRIALS = 50
DIRECT_TRIALS = 20
POSTGRES_TRIALS = 25
REFUSED = {"AlreadyDecidedError + resumed", "NotPausedError + resumed", "ThreadBusyError + resumed"}
"""How the losing worker of a race may end: the thread held by the winner, or decided by it."""


def run_trials(tmp_path: Path, trials: int, direct: bool, db: str | None = None) -> tuple[Counter[str], Counter[str]]:
    tests_dir = str(Path(__file__).parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(["graphloop.graph", "race_child"])
    db, effects = db or str(tmp_path / "race.db"), str(tmp_path / "effects.log")
    outcomes: Counter[str] = Counter()
    with ScriptedServer([race_child.model_reply] * (4 * trials), strict=True) as server:
        orch = race_child.orchestrator(db, server.url, effects)
        barrier, outbox = mp.Barrier(2), mp.Queue()
        inboxes: list[Any] = [mp.Queue(), mp.Queue()]
        workers = [mp.Process(target=race_child.worker, args=(f"w{i}", db, server.url, effects,
                                                               inboxes[i], outbox, barrier))
                   for i in range(2)]
        for w in workers:
            w.start()
        threads = []
        try:
            for trial in range(trials):
                paused = orch.run_sync(f"t{trial}")
                assert paused.checkpoint is not None, paused.response
                threads.append(paused.thread_id)
                for inbox in inboxes:
                    inbox.put((paused.thread_id, direct))
                ends = sorted(outbox.get(timeout=60)[2] for _ in range(2))
                outcomes[" + ".join(ends)] += 1
        finally:
            for inbox in inboxes:
                inbox.put(None)
            for w in workers:
                w.join(30)
    runs = Counter(Path(effects).read_text().split())
    return outcomes, Counter({t: runs[f"t{i}"] for i, t in enumerate(threads)})


def test_two_processes_resuming_one_paused_thread_run_the_approved_call_exactly_once(tmp_path: Path) -> None:
    outcomes, runs = run_trials(tmp_path, TRIALS, direct=False)
    print(f"{TRIALS} trials: {dict(outcomes)}")
    assert set(runs.values()) == {1}, runs  # exactly one transfer per trial
    assert set(outcomes) <= REFUSED, outcomes
    # the race really happened: the loser was refused while the winner ran, or after it decided
    assert outcomes["ThreadBusyError + resumed"] + outcomes["AlreadyDecidedError + resumed"] >= TRIALS // 5


def test_two_direct_graph_resumes_still_run_the_call_once_thanks_to_its_claim(tmp_path: Path) -> None:
    outcomes, runs = run_trials(tmp_path, DIRECT_TRIALS, direct=True)
    print(f"{DIRECT_TRIALS} trials: {dict(outcomes)}")
    assert set(runs.values()) == {1}, runs


@pytest.mark.postgres
def test_the_race_on_postgres_runs_each_approved_call_once(tmp_path: Path, postgres_db: str) -> None:
    outcomes, runs = run_trials(tmp_path, POSTGRES_TRIALS, direct=False, db=postgres_db)
    print(f"{POSTGRES_TRIALS} trials on PostgreSQL: {dict(outcomes)}")
    assert set(runs.values()) == {1}, runs
    assert set(outcomes) <= REFUSED, outcomes
