"""Several worker processes serving one PostgreSQL database: any worker resumes any thread,
and every approved call runs exactly once.

50 threads are paused at a gated `transfer`; then 4 worker processes each go through all
50 (each in its own shuffled order) and try to approve them.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from graphloop.graph import Approvals
from graphloop.graph.testing import ScriptedServer

import race_child

WORKERS = 4
THREADS = 50

pytestmark = pytest.mark.postgres


def test_four_workers_share_fifty_paused_threads_and_each_call_runs_once(
    postgres_db: str, tmp_path: Path
) -> None:
    tests_dir = str(Path(__file__).parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(["graphloop.graph", "race_child"])
    effects = str(tmp_path / "effects.log")
    with ScriptedServer([race_child.model_reply] * (2 * THREADS + WORKERS * THREADS), strict=True) as server:
        orch = race_child.orchestrator(postgres_db, server.url, effects)
        threads = [orch.run_sync(f"t{i}", thread_id=f"t{i}").thread_id for i in range(THREADS)]
        assert len(Approvals(postgres_db).pending()) == THREADS
        barrier, outbox = mp.Barrier(WORKERS), mp.Queue()
        workers = [mp.Process(target=race_child.work_through, args=(
            f"w{n}", postgres_db, server.url, effects, random.Random(n).sample(threads, THREADS),
            barrier, outbox)) for n in range(WORKERS)]
        for w in workers:
            w.start()
        outcomes: list[tuple[str, str, str]] = []
        finished = 0
        while finished < WORKERS:
            thread_id, name, outcome = outbox.get(timeout=120)
            if thread_id is None:
                finished += 1
            else:
                outcomes.append((thread_id, name, outcome))
        for w in workers:
            w.join(30)
            assert w.exitcode == 0
    transfers = Counter(Path(effects).read_text().split())
    assert transfers == Counter({t: 1 for t in threads})  # every approved call ran exactly once
    winners = Counter(name for _, name, outcome in outcomes if outcome == "resumed")
    assert sum(winners.values()) == THREADS and len(winners) >= 2, winners  # any worker resumes any thread
    losers = Counter(o for _, _, o in outcomes if o != "resumed")
    assert losers.keys() <= {"AlreadyDecidedError", "NotPausedError", "ThreadBusyError"}, losers
    assert Approvals(postgres_db).pending() == []
    decided_by = {d["thread_id"]: d["decided_by"] for d in Approvals(postgres_db).decisions()}
    assert decided_by == {t: n for t, n, o in outcomes if o == "resumed"}
    print(f"{THREADS} threads over {WORKERS} workers: resumed by {dict(winners)}; "
          f"lost races: {dict(Counter(o for _, _, o in outcomes if o != 'resumed'))}")
