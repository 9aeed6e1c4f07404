"""The ledger in a SQLite file: tables made with sqlite-utils, one connection, WAL mode."""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from os import PathLike
from typing import Any

import sqlite_utils

from graphloop.checkpointers.drivers import drivers_at
from graphloop.checkpointers.encoding import from_row, to_columns
from graphloop.checkpointers.ledger import SCHEMA_VERSION, Cursor, Ledger
from graphloop.checkpointers.sqlite_files import opening, usable_sqlite_path

__all__ = ["SqliteLedger"]

_BUSY_TIMEOUT_S = 30.0


class _SqliteCursor:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, sql: str, args: Sequence[object] = ()) -> int:
        return self._conn.execute(sql, to_columns(args)).rowcount

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[dict[str, Any]]:
        cursor = self._conn.execute(sql, to_columns(args))
        names = [d[0] for d in cursor.description]
        return [from_row(dict(zip(names, row, strict=True))) for row in cursor]


PAGE_SIZE = 8192
"""Bytes per page of a SQLite file graphloop creates (SQLite's default is 4096)."""


class SqliteLedger(Ledger):
    """The ledger in the SQLite file the checkpoints use."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        files = [str(row[2]) for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
        self.drivers = drivers_at(files[0] if files else None)
        self._create_tables()

    @classmethod
    @contextmanager
    def connect(cls, path: str | PathLike[str]) -> Generator[Ledger, None, None]:
        """Open the ledger in the SQLite file `path` (":memory:" for a throwaway one)."""
        with opening(path):  # a file that is not SQLite is refused unopened; SQLite's refusals named
            conn = sqlite3.connect(usable_sqlite_path(path), timeout=_BUSY_TIMEOUT_S,
                                   check_same_thread=False, isolation_level=None)
        ledger: Ledger | None = None
        try:
            with opening(path):
                # a new file gets 8 KB pages: stored messages (a few hundred bytes to a few KB once
                # compressed) leave less of each page unused (3.34× → 3.11× the conversation at 200
                # rounds, `bench/loop_bench.py`); a file with tables keeps its size
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # claims and decisions: FULL (_transaction)
                if sys.platform == "darwin":  # macOS's fsync leaves the drive's cache unflushed
                    conn.execute("PRAGMA fullfsync=ON")
                opened = cls(conn)
            yield (ledger := opened)
        finally:
            if ledger is None:
                conn.close()
            else:
                ledger.close_when_free(conn.close)  # a tool call past its timeout may hold it

    @contextmanager
    def _transaction(self, *, write: bool = True, flush: bool = False) -> Generator[Cursor, None, None]:
        """`BEGIN IMMEDIATE` for writes, so checks and writes in it agree across processes.

        With `flush`, the commit runs with `synchronous=FULL`: the WAL is synced to disk before
        it returns, and with it every commit before this one (the checkpoints' too: one WAL
        serves every connection to the file). Every other commit is `NORMAL`: in the WAL, which
        survives the process, not yet synced to the disk.
        """
        with self._lock:
            # SQLite takes the setting outside a transaction only; the connection's own comes back
            before = self._conn.execute("PRAGMA synchronous").fetchone()[0] if flush else None
            if flush:
                self._conn.execute("PRAGMA synchronous=FULL")
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield _SqliteCursor(self._conn)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:  # also a COMMIT that failed and left it open
                        self._conn.execute("ROLLBACK")
                    raise
            finally:
                if before is not None:
                    self._conn.execute(f"PRAGMA synchronous={int(before)}")

    def reclaim_space(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("VACUUM")

    def _create_tables(self) -> None:
        """Create the tables unless they are there; a read only, once they are (no write lock)."""
        with self._lock:
            found = self._schema_version()
            self.check_version(found)
            if found == SCHEMA_VERSION and self._has_table("model_calls"):  # (0.4.0 made none)
                return
            # one creator at a time: the write lock first (waiting up to the busy timeout), then
            # look again, since another process may have made the tables meanwhile
            with self._transaction():
                found = self._schema_version()
                self.check_version(found)
                self._make_tables(sqlite_utils.Database(self._conn))  # each only if it is missing

    def _has_table(self, name: str) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (name,)).fetchone() is not None

    def _schema_version(self) -> int | None:
        if not self._has_table("graphloop_meta"):
            return None
        row = self._conn.execute("SELECT value FROM graphloop_meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else int(row[0])

    def _make_tables(self, db: sqlite_utils.Database) -> None:
        """The tables, by sqlite-utils (inside the caller's transaction: nothing commits early)."""
        db.table("graphloop_meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
        db.table("tool_calls").create(
            {"thread_id": str, "call_id": str, "round": int, "tool": str, "args": str,
             "status": str, "started_at": str, "duration_ms": float, "model": str,
             "user_id": str, "user_role": str, "result_chars": int},
            pk=("thread_id", "call_id"), not_null=["status", "tool"], if_not_exists=True)
        db.table("decisions").create(
            {"thread_id": str, "call_id": str, "interrupt_id": str, "tool": str, "decision": str,
             "decided_by": str, "decided_at": str, "call_hash": str, "edited_hash": str,
             "payload": str},
            pk=("thread_id", "call_id"), not_null=["decision"], if_not_exists=True)
        db.table("tool_results").create({"thread_id": str, "call_id": str, "result": str},
                                        pk=("thread_id", "call_id"), if_not_exists=True)
        db.table("inbox").create(
            {"thread_id": str, "interrupt_id": str, "calls": str, "question": str,
             "waiting_since": str, "user_id": str, "user_role": str},
            pk="thread_id", if_not_exists=True)
        db.table("inbox").create_index(["waiting_since"], if_not_exists=True)
        db.table("tool_rules").create(
            {"user_id": str, "tool": str, "rule": str, "granted_by": str, "granted_at": str},
            pk=("user_id", "tool"), if_not_exists=True)
        db.table("model_calls").create(
            {"thread_id": str, "run_id": str, "round": int, "model": str, "purpose": str, "outcome": str,
             "input_tokens": int, "output_tokens": int, "counted": int, "latency_ms": float,
             "started_at": str, "user_id": str},
            not_null=["thread_id", "outcome"], if_not_exists=True)
        db.table("model_calls").create_index(["thread_id", "run_id"], if_not_exists=True)
        db.table("model_calls").create_index(["started_at"], if_not_exists=True)
        self._conn.execute(
            "INSERT OR IGNORE INTO graphloop_meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),))
