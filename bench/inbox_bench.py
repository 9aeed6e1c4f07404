"""Listing the threads that wait for a decision, in a database holding 10,000 threads.

The database is built from real runs: 20 threads paused at the gate and 180 finished ones,
made through the Orchestrator against the scripted server, then copied row for row under new
thread ids (checkpoints, writes, inbox, audit) to 10,000 threads, 1,000 of them paused. The
inbox (`Approvals.pending()`, one indexed table) is timed against the baseline a library
without one must use: read every thread's latest checkpoint and keep those with an interrupt.
Figures are medians of repeated runs in this invocation, and the ratio between them.

Run: python bench/inbox_bench.py
"""

from __future__ import annotations

import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from graphloop.graph import Approvals, ModelConfig, Orchestrator, compile_graph, open_saver
from graphloop.graph.testing import ScriptedServer, reply, tool_call

THREADS = 10_000
PAUSED_SHARE = 10  # one thread in ten waits for a decision
REAL = 200


def send_email(to: str) -> str:
    """Send an email."""
    return f"sent to {to}"


def lookup(key: str) -> str:
    """Look something up."""
    return f"{key}: " + "x" * 500


def build(db: Path) -> None:
    """REAL real threads (one in ten paused), then copies of them up to THREADS."""
    with ScriptedServer() as server:
        model = ModelConfig(label="bench", api_url=server.url, model_name="scripted", max_retries=0)
        orch = Orchestrator([send_email, lookup], confirm_required=["send_email"], db=db,
                            models=[model], ask_model_to_confirm=False)
        for i in range(REAL):
            server.add(reply(None, tool_call("lookup", key=f"k{i}")))
            if i % PAUSED_SHARE == 0:
                server.add(reply(None, tool_call("send_email", to=f"user{i}@example.com")))
            else:
                server.add(reply("done"))
            orch.run_sync(f"task {i}", thread_id=f"real-{i}")
    with sqlite3.connect(db) as conn:
        for copy in range(1, THREADS // REAL):
            for table in ("checkpoints", "writes", "inbox", "tool_calls"):
                columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
                rest = ", ".join(c for c in columns if c != "thread_id")
                conn.execute(f"INSERT INTO {table} (thread_id, {rest}) "
                             f"SELECT 'copy{copy}-' || thread_id, {rest} FROM {table} "
                             "WHERE thread_id LIKE 'real-%'")


def scan_checkpoints(db: Path) -> list[str]:
    """The baseline: every thread's latest state, kept when it waits at an interrupt."""
    with open_saver(db) as saver:
        graph = compile_graph(saver)
        threads = {c.config["configurable"]["thread_id"] for c in saver.list(None)}
        return sorted(t for t in threads
                      if graph.get_state({"configurable": {"thread_id": t}}).interrupts)


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        build(db)
        approvals = Approvals(db)
        inbox_s, inbox = timed(approvals.pending, 20)
        scan_s, scanned = timed(lambda: scan_checkpoints(db), 3)
        assert sorted(e["thread_id"] for e in inbox) == scanned, "the inbox and the scan disagree"
        size_mb = db.stat().st_size / 1e6
    print(f"# inbox listing, {date.today()}, {platform.machine()} {platform.system()}, "
          f"Python {sys.version.split()[0]}")
    print(f"{THREADS:,} threads ({len(inbox):,} paused), database {size_mb:.1f} MB\n")
    print("| method | median time | ratio |")
    print("|---|---|---|")
    print(f"| scan every thread's checkpoint (baseline) | {scan_s * 1000:,.0f} ms | 1 |")
    print(f"| `Approvals.pending()` (inbox table) | {inbox_s * 1000:,.1f} ms | "
          f"{inbox_s / scan_s:.4f} (1/{scan_s / inbox_s:,.0f}) |")


if __name__ == "__main__":
    main()
