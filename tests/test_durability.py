"""One disk flush per side effect: a tool call's claim is on disk before the call runs; the
checkpoints between are written without forcing a flush. Counted with strace, and proved by a
simulated power cut: the database put back as it was at each flush, then resumed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from graphloop.checkpointers.ledger_sqlite import SqliteLedger
from graphloop.graph import Orchestrator
from graphloop.graph.testing import ScriptedReply, ScriptedServer, reply, tool_call

CHILD = Path(__file__).with_name("flush_child.py")


SYNCS = re.compile(r"\b(?:fsync|fdatasync)\(\d+<([^>]*)>")
"""A flush in strace's log (`-y` names the file): the file's path."""
STARTS = re.compile(r"graphloop-tool-starts-(\d+)")
"""The mark flush_child.py's tool leaves as it starts (an `access` call)."""


def traced(tmp_path: Path, mode: str, count: int) -> str:
    """strace's log of a child process running `count` rounds (see flush_child.py): its flushes
    (fsync, fdatasync) and the marks of its tool starts, in order."""
    log, db = tmp_path / f"{mode}{count}.strace", tmp_path / f"{mode}{count}.db"
    child = [sys.executable, str(CHILD), mode, str(count), str(db)]
    calls = "trace=fsync,fdatasync,access,faccessat,faccessat2"
    # --seccomp-bpf stops the child only at the traced calls (ten times faster); older straces lack it
    for fast in (["--seccomp-bpf"], []):
        done = subprocess.run(["strace", *fast, "-f", "-qq", "-y", "-e", calls, "-o", str(log), *child],
                              capture_output=True, text=True, timeout=300)
        if "seccomp" not in done.stderr:
            break
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    return log.read_text()


def flushes(tmp_path: Path, mode: str, count: int) -> int:
    return len(SYNCS.findall(traced(tmp_path, mode, count)))


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to count the flushes")
def test_a_tool_round_costs_one_flush_and_an_answer_round_none(tmp_path: Path) -> None:
    per_tool_round = (flushes(tmp_path, "tools", 5) - flushes(tmp_path, "tools", 1)) / 4
    per_answer_round = (flushes(tmp_path, "answers", 5) - flushes(tmp_path, "answers", 1)) / 4
    assert (per_tool_round, per_answer_round) == (1, 0)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see the flushes")
def test_each_tool_call_starts_only_after_the_database_log_was_flushed(tmp_path: Path) -> None:
    flushed_since_last_start: list[bool] = []
    flushed = False
    for line in traced(tmp_path, "tools", 3).splitlines():
        if (sync := SYNCS.search(line)) and sync.group(1).endswith(".db-wal"):
            flushed = True
        elif STARTS.search(line):
            flushed_since_last_start.append(flushed)
            flushed = False
    assert flushed_since_last_start == [True, True, True]


# -- a power cut -------------------------------------------------------------------------------

RAN: list[int] = []


def fetch(doc: int) -> str:
    """Fetch a document."""
    RAN.append(doc)
    return f"document {doc}"


def researcher(rounds: int) -> Any:
    """`rounds` tool rounds, one call each (any answer to a call counts, also "not run again"),
    then the answer."""
    def answer(body: dict[str, Any]) -> ScriptedReply:
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        return reply("done") if done >= rounds else reply(None, tool_call("fetch", doc=done))
    return answer


def claimed(db: Path) -> set[int]:
    """The calls of thread "t" claimed in the database at `db`."""
    with ScriptedServer(strict=True) as server:
        orch = Orchestrator([fetch], db=db, models=[server.model_config()])
        return {int(call["args"]["doc"]) for call in orch.approvals.tool_calls("t")}


def test_after_a_power_cut_at_any_flush_no_claimed_call_runs_again(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "graphloop.db"
    cuts: list[tuple[Path, list[int]]] = []  # the files as they were at each flush, and the calls started then
    transaction = SqliteLedger._transaction  # pyright: ignore[reportPrivateUsage]

    @contextmanager
    def copy_at_flush(self: SqliteLedger, *, write: bool = True, flush: bool = False) -> Iterator[Any]:
        with transaction(self, write=write, flush=flush) as tx:
            yield tx
        if not flush:
            return
        kept = tmp_path / f"cut{len(cuts)}"
        kept.mkdir()
        for suffix in ("", "-wal"):  # what is on disk now; -shm is rebuilt from the WAL
            if Path(f"{db}{suffix}").exists():
                shutil.copyfile(f"{db}{suffix}", kept / f"graphloop.db{suffix}")
        cuts.append((kept, list(RAN)))

    monkeypatch.setattr(SqliteLedger, "_transaction", copy_at_flush)
    RAN.clear()
    with ScriptedServer([researcher(3)] * 4, strict=True) as server:
        assert Orchestrator([fetch], db=db, models=[server.model_config()]).run_sync("read", thread_id="t").response == "done"
    monkeypatch.undo()
    assert RAN == [0, 1, 2] and len(cuts) == 3  # one flush per call: its claim

    for kept, started in cuts:
        on_disk = claimed(kept / "graphloop.db")
        # a call had started only once its claim was on disk: one whose claim was lost had not
        assert set(started) < on_disk, (kept.name, started, on_disk)
        RAN.clear()
        with ScriptedServer([researcher(3)] * 4, strict=True) as server:
            orch = Orchestrator([fetch], db=kept / "graphloop.db", models=[server.model_config()])
            assert orch.resume_sync("t").response == "done"  # the thread resumes from the last flush
        assert not set(RAN) & on_disk, (kept.name, RAN)  # a claimed call never runs again
        assert len(RAN) == len(set(RAN)) and sorted(set(RAN) | on_disk) == [0, 1, 2]


@pytest.mark.postgres
def test_on_postgres_only_claims_and_decisions_wait_for_the_wal_flush(postgres_db: str) -> None:
    """And a URL's own options are kept (the pool sets the checkpoints' setting per connection)."""
    import psycopg

    from graphloop.graph import open_ledger, open_saver

    def setting(rows: list[dict[str, Any]]) -> str:
        return str(rows[0]["synchronous_commit"])

    with psycopg.connect(postgres_db, autocommit=True) as conn:  # a server whose default is off
        conn.execute(f"ALTER DATABASE {postgres_db.rsplit('/', 1)[1]} SET synchronous_commit = off")  # pyright: ignore[reportArgumentType]

    with open_saver(f"{postgres_db}?options=-c%20application_name%3Dmine") as saver:
        with saver.conn.connection() as conn:  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]  # the saver's pool
            assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "off"  # pyright: ignore[reportUnknownMemberType]
            assert conn.execute("SHOW application_name").fetchone()["application_name"] == "mine"  # pyright: ignore[reportUnknownMemberType]
    with open_ledger(postgres_db) as ledger:
        with ledger._transaction(flush=True) as tx:  # pyright: ignore[reportPrivateUsage]  # what claim_call uses
            assert setting(tx.rows("SHOW synchronous_commit")) == "on"  # whatever the server's default
        with ledger._transaction() as tx:  # pyright: ignore[reportPrivateUsage]  # every other write
            assert setting(tx.rows("SHOW synchronous_commit")) == "off"


def test_a_pause_is_on_disk_when_the_run_returns_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "graphloop.db"
    kept = tmp_path / "at-last-flush"
    transaction = SqliteLedger._transaction  # pyright: ignore[reportPrivateUsage]

    @contextmanager
    def copy_at_flush(self: SqliteLedger, *, write: bool = True, flush: bool = False) -> Iterator[Any]:
        with transaction(self, write=write, flush=flush) as tx:
            yield tx
        if flush:
            shutil.rmtree(kept, ignore_errors=True)
            kept.mkdir()
            for suffix in ("", "-wal"):
                if Path(f"{db}{suffix}").exists():
                    shutil.copyfile(f"{db}{suffix}", kept / f"graphloop.db{suffix}")

    monkeypatch.setattr(SqliteLedger, "_transaction", copy_at_flush)
    with ScriptedServer([reply(None, tool_call("fetch", doc=7)), reply("May I fetch document 7?")],
                        strict=True) as server:
        orch = Orchestrator([fetch], confirm_required=["fetch"], db=db, models=[server.model_config()])
        assert orch.run_sync("read 7", thread_id="t").checkpoint is not None
    monkeypatch.undo()
    RAN.clear()
    with ScriptedServer([reply("Fetched.")], strict=True) as server:  # the power cut: back to the last flush
        orch = Orchestrator([fetch], confirm_required=["fetch"], db=kept / "graphloop.db",
                            models=[server.model_config()])
        assert [p["thread_id"] for p in orch.approvals.pending()] == ["t"]
        assert orch.resume_sync("t", confirmed=True).response == "Fetched."
    assert RAN == [7]
