"""The ledger in PostgreSQL, beside langgraph's checkpoint tables, through a connection pool."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from graphloop.checkpointers.drivers import drivers_at
from graphloop.checkpointers.encoding import from_row, to_columns
from graphloop.checkpointers.ledger import SCHEMA_VERSION, Cursor, Ledger

__all__ = ["PostgresLedger"]

_MODEL_CALLS = """
CREATE TABLE IF NOT EXISTS model_calls (
    thread_id TEXT NOT NULL, run_id TEXT, round INTEGER, model TEXT, purpose TEXT, outcome TEXT NOT NULL,
    input_tokens BIGINT, output_tokens BIGINT, counted INTEGER, latency_ms DOUBLE PRECISION,
    started_at TEXT, user_id TEXT, seq BIGSERIAL PRIMARY KEY);
CREATE INDEX IF NOT EXISTS model_calls_thread_run ON model_calls (thread_id, run_id);
CREATE INDEX IF NOT EXISTS model_calls_started_at ON model_calls (started_at);
"""
"""Added after 0.4.0: made in a database whose other tables are there already."""

_TABLES = """
CREATE TABLE IF NOT EXISTS graphloop_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS tool_calls (
    thread_id TEXT NOT NULL, call_id TEXT NOT NULL, round INTEGER, tool TEXT NOT NULL, args TEXT,
    status TEXT NOT NULL, started_at TEXT, duration_ms DOUBLE PRECISION, model TEXT, user_id TEXT,
    user_role TEXT, result_chars INTEGER, seq BIGSERIAL, PRIMARY KEY (thread_id, call_id));
CREATE TABLE IF NOT EXISTS decisions (
    thread_id TEXT NOT NULL, call_id TEXT NOT NULL, interrupt_id TEXT, tool TEXT,
    decision TEXT NOT NULL, decided_by TEXT, decided_at TEXT, call_hash TEXT, edited_hash TEXT,
    payload TEXT, seq BIGSERIAL, PRIMARY KEY (thread_id, call_id));
CREATE TABLE IF NOT EXISTS tool_results (
    thread_id TEXT NOT NULL, call_id TEXT NOT NULL, result TEXT, PRIMARY KEY (thread_id, call_id));
CREATE TABLE IF NOT EXISTS inbox (
    thread_id TEXT PRIMARY KEY, interrupt_id TEXT, calls TEXT, question TEXT, waiting_since TEXT,
    user_id TEXT, user_role TEXT);
CREATE INDEX IF NOT EXISTS inbox_waiting_since ON inbox (waiting_since);
CREATE TABLE IF NOT EXISTS tool_rules (
    user_id TEXT NOT NULL, tool TEXT NOT NULL, rule TEXT, granted_by TEXT, granted_at TEXT,
    PRIMARY KEY (user_id, tool));
""" + _MODEL_CALLS


def _create_tables(pool: ConnectionPool[Connection[dict[str, Any]]]) -> None:
    with pool.connection() as conn, conn.transaction():
        # one creator at a time across workers: CREATE IF NOT EXISTS races in PostgreSQL
        conn.execute("SELECT pg_advisory_xact_lock(7201451)")
        exists = conn.execute("SELECT to_regclass('graphloop_meta') AS t").fetchone()
        found = None
        if exists and exists["t"] is not None:
            row = conn.execute("SELECT value FROM graphloop_meta WHERE key = 'schema_version'").fetchone()
            found = None if row is None else int(row["value"])
        Ledger.check_version(found)
        if found == SCHEMA_VERSION:
            conn.execute(_MODEL_CALLS)  # pyright: ignore[reportArgumentType]  # a constant
            return
        conn.execute(_TABLES)  # pyright: ignore[reportArgumentType]  # a constant
        conn.execute("INSERT INTO graphloop_meta (key, value) VALUES ('schema_version', %s) "
                     "ON CONFLICT DO NOTHING", (str(SCHEMA_VERSION),))


class _PostgresCursor:
    def __init__(self, conn: Connection[dict[str, Any]]) -> None:
        self._conn = conn

    def run(self, sql: str, args: Sequence[object] = ()) -> int:
        return self._conn.execute(sql.replace("?", "%s"), to_columns(args)).rowcount  # pyright: ignore[reportArgumentType]  # the statement is built from constants

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[dict[str, Any]]:
        return [from_row(r) for r in self._conn.execute(sql.replace("?", "%s"), to_columns(args)).fetchall()]  # pyright: ignore[reportArgumentType]  # the statement is built from constants


_POOL_SIZE = 20
_pools: dict[str, ConnectionPool[Connection[dict[str, Any]]]] = {}
_pools_lock = threading.Lock()


def _pool(url: str) -> ConnectionPool[Connection[dict[str, Any]]]:
    with _pools_lock:
        if url not in _pools:
            pool = ConnectionPool(url, min_size=1, max_size=_POOL_SIZE, kwargs={"row_factory": dict_row},
                                  connection_class=Connection[dict[str, Any]], open=True)
            _create_tables(pool)
            _pools[url] = pool
            if len(_pools) == 1:
                atexit.register(_close_pools)
        return _pools[url]


def _close_pools() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


class PostgresLedger(Ledger):
    """The ledger in a PostgreSQL database, shared by every worker that uses it."""

    order_key = "seq"

    def __init__(self, pool: ConnectionPool[Connection[dict[str, Any]]], url: str | None = None) -> None:
        self._pool = pool
        self.drivers = drivers_at(url or str(pool.conninfo), postgres=True)

    @classmethod
    @contextmanager
    def connect(cls, url: str) -> Generator[Ledger, None, None]:
        """The ledger of the PostgreSQL database at `url`.

        Every ledger of one database in a process shares one pool of connections (opened on
        first use, closed at exit), so many concurrent runs need few connections.
        """
        yield cls(_pool(url), url)

    @contextmanager
    def _transaction(self, *, write: bool = True, flush: bool = False) -> Generator[Cursor, None, None]:
        with self._pool.connection() as conn, conn.transaction():
            if write:  # only claims and decisions wait for the WAL flush, whatever the server's default
                conn.execute(f"SET LOCAL synchronous_commit = {'on' if flush else 'off'}")
            yield _PostgresCursor(conn)

    def reclaim_space(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum reuses the freed space."""

