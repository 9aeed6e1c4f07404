"""Checkpoint saver factories: a SQLite file by default, PostgreSQL for several machines,
memory for throwaway runs; and the ledger beside them.

SQLite runs in WAL mode (set by langgraph's saver on setup) so readers never block the writer.
A `postgresql://` URL opens langgraph's Postgres saver on a connection pool (and creates its
tables the first time a process uses that database).

Example:
    >>> async with open_async_saver("graphloop.db") as saver:  # doctest: +SKIP
    ...     graph = compile_graph(checkpointer=saver)
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import AsyncGenerator, Generator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from os import PathLike
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from graphloop.checkpointers.blocking import in_db_thread
from graphloop.checkpointers.compression import CompressedSerializer
from graphloop.checkpointers.errors import ConfigurationError
from graphloop.checkpointers.ledger import Ledger, is_postgres_url
from graphloop.checkpointers.ledger_sqlite import SqliteLedger
from graphloop.checkpointers.redact import redact
from graphloop.checkpointers.sqlite_files import opening, writable_sqlite_path
from graphloop.checkpointers.threaded import OnItsThread

__all__ = [
    "DbLike",
    "attach_ledger",
    "db_label",
    "is_short_version",
    "ledger_for",
    "memory_saver",
    "open_async_saver",
    "open_ledger",
    "open_saver",
    "short_version",
    "writes_short_versions",
]

DbLike = str | PathLike[str] | BaseCheckpointSaver[str]
"""A SQLite file path, a `postgresql://` URL, or a saver you opened yourself (any langgraph
checkpointer)."""

_BUSY_TIMEOUT_S = 30.0

_UNFLUSHED_SQLITE = "PRAGMA synchronous=NORMAL"
"""Checkpoints are committed to the WAL without waiting for the disk (see `graphloop.checkpointers.ledger`)."""
_UNFLUSHED_POSTGRES = "SET synchronous_commit = off"
"""The same for PostgreSQL, on each connection of the checkpoint pool (a URL's own `options`
are kept): a checkpoint's commit does not wait for the WAL flush."""


_ledgers: weakref.WeakKeyDictionary[BaseCheckpointSaver[str], Ledger] = weakref.WeakKeyDictionary()


def attach_ledger(saver: BaseCheckpointSaver[str], ledger: Ledger) -> None:
    """Make `ledger` the one graphs compiled with `saver` claim calls and decisions in.

    graphloop's own factories (`open_saver`, `open_async_saver`, `memory_saver`) do this; call
    it for a saver you opened yourself, with a ledger on the same database.
    """
    _ledgers[saver] = ledger


def ledger_for(saver: BaseCheckpointSaver[str]) -> Ledger | None:
    """The ledger attached to `saver`, if any."""
    return _ledgers.get(saver)


def db_label(db: DbLike) -> str:
    """`db` fit for a message or a log line: a URL's password replaced by `****` (`redact`).

    Example:
        >>> db_label("postgresql://app:s3cret@db.internal/graphloop")
        'postgresql://app:****@db.internal/graphloop'
    """
    if isinstance(db, BaseCheckpointSaver):
        return _stock_name(db)
    return redact(str(db))


class _ShortVersions:
    """Short channel versions: a step counter in 8 hex digits (`0000032a`) on graphloop's SQLite
    savers.

    LangGraph stamps every channel of every checkpoint with a version, and a checkpoint also
    records which versions each node has seen. The stock savers make each one a 52-character
    string, `00000000000000000000000000000804.0.3145060616380351`, which was 1.2 KB of a
    checkpoint's 1.8 KB. LangGraph compares versions as strings: a fixed width keeps the order,
    and every short version sorts after every stock one (its first eight characters are never
    all zeros where the stock one's are), so a thread begun with stock versions goes on with
    short ones in order. SQLite keeps a checkpoint's values inside its row, so a version needs
    no random part to stay unique across forks of a thread (the memory saver, which keys values
    by version, keeps the stock form). A thread numbered with integers (a saver using LangGraph's
    default) goes on with integers. The one cost: a stock saver cannot continue a thread with
    short versions (its next version would sort before them), so `graphloop.graph.ownership`
    refuses it before it writes.
    """

    writes_short_versions = True

    def get_next_version(self, current: Any, channel: None) -> Any:
        if isinstance(current, int):  # a thread another saver numbered with integers
            return current + 1
        return short_version(current)


def short_version(current: str | None) -> str:
    """The version after `current` (a short one, a stock one, or None), as 8 hex digits.

    Example:
        >>> short_version(None), short_version("00000000000000000000000000000804.0.31"), short_version("0000032a")
        ('00000001', '00000325', '0000032b')
    """
    if current is None:
        step = 0
    elif "." in current:  # LangGraph's form: a zero-padded decimal step, then a random part
        step = int(current.split(".", 1)[0])
    else:
        step = int(current, 16)
    return f"{step + 1:08x}"


def is_short_version(version: object) -> bool:
    """Whether `version` is one of graphloop's short versions (a stock saver cannot follow it)."""
    return isinstance(version, str) and "." not in version


def writes_short_versions(saver: BaseCheckpointSaver[str]) -> bool:
    """Whether `saver` is one of graphloop's, which write short versions (and continue a thread
    begun with LangGraph's version strings too)."""
    return getattr(saver, "writes_short_versions", False) is True


def _stock_name(saver: BaseCheckpointSaver[str]) -> str:
    """The saver's class as a user knows it: the langgraph saver that graphloop's own extends."""
    return next(c.__name__ for c in type(saver).__mro__ if not c.__name__.startswith("_"))


_COMPACT_TABLES = """
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint BLOB,
    metadata BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_path TEXT NOT NULL DEFAULT '',
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    value BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
"""
"""LangGraph's two checkpoint tables, column for column, made `WITHOUT ROWID` in a new file.

A stock table keeps its rows by a hidden rowid and its primary key (thread, checkpoint and
task ids: about 110 bytes a row) a second time in an index; without a rowid the rows are
stored in the key's order once. That was a sixth of the file at 200 rounds. LangGraph's saver
reads and writes them with the same SQL (it never uses a rowid), and a stock saver can open
the file. A file whose tables exist keeps them as they are; `tests/test_storage.py` checks
that these columns and keys are still LangGraph's.
"""


class _SqliteSaver(_ShortVersions, OnItsThread, SqliteSaver):
    """langgraph's SQLite saver, with short versions, compressed rows (opened with
    `CompressedSerializer`), tables without rowids in a new file, and async methods that run
    the sync ones on its own thread."""

    def setup(self) -> None:
        if not self.is_setup:
            with self.lock:
                self.conn.executescript(_COMPACT_TABLES)
        super().setup()


def memory_saver() -> InMemorySaver:
    """A saver that keeps checkpoints in this process only (tests, notebooks), with a ledger
    in memory beside it, so calls are still claimed once and audited."""
    saver = InMemorySaver()
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    ledger = SqliteLedger(conn)
    attach_ledger(saver, ledger)
    weakref.finalize(saver, conn.close)
    return saver


def _sqlite_path(db: str | PathLike[str]) -> str:
    """`db`, refused unless a saver can use it (`writable_sqlite_path`: a missing folder is
    never created, a read-only file is named now rather than at the first checkpoint)."""
    return writable_sqlite_path(db)


_POOL_SIZE = 10
_ready: set[str] = set()
"""PostgreSQL URLs whose checkpoint tables this process has already set up."""
_setup_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
_SETUP_LOCK = 7201452
"""The advisory lock that keeps two processes from setting up the same database at once."""


@asynccontextmanager
async def _postgres_async(url: str) -> AsyncGenerator[BaseCheckpointSaver[str], None]:
    """langgraph's async Postgres saver on a connection pool (the settings it requires)."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    # the Orchestrator's concurrent runs share one saver (its shared session), so a
    # pool per Orchestrator and event loop bounds the connections however many runs there are
    async def unflushed(conn: AsyncConnection[Any]) -> None:
        await conn.execute(_UNFLUSHED_POSTGRES)

    async with AsyncConnectionPool(url, min_size=1, max_size=_POOL_SIZE, open=False, configure=unflushed, kwargs={
            "autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}) as pool:
        saver = AsyncPostgresSaver(pool)  # pyright: ignore[reportArgumentType]  # a pool is a valid conn
        if url not in _ready:
            loop_lock = _setup_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            async with loop_lock, await AsyncConnection.connect(url, autocommit=True) as lock:
                # setup() races with itself on a new database: one process at a time, one task
                await lock.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK,))
                if url not in _ready:
                    await saver.setup()
                    _ready.add(url)
        yield saver


@contextmanager
def _postgres_sync(url: str) -> Generator[BaseCheckpointSaver[str], None, None]:
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    def unflushed(conn: Connection[Any]) -> None:
        conn.execute(_UNFLUSHED_POSTGRES)

    with ConnectionPool(url, min_size=1, max_size=_POOL_SIZE, configure=unflushed, kwargs={
            "autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}) as pool:
        saver = PostgresSaver(pool)  # pyright: ignore[reportArgumentType]  # a pool is a valid conn
        if url not in _ready:
            with Connection.connect(url, autocommit=True) as lock:
                lock.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK,))
                saver.setup()
                _ready.add(url)
        yield saver


@contextmanager
def open_saver(db: DbLike) -> Generator[BaseCheckpointSaver[str], None, None]:
    """Open a synchronous saver for `db`, with graphloop's ledger in the same database attached
    (see `attach_ledger`); a saver passed in is yielded as is (not closed)."""
    if isinstance(db, BaseCheckpointSaver):
        yield db
        return
    with open_ledger(db) as ledger:
        if is_postgres_url(db):
            _require_postgres()
            with _postgres_sync(str(db)) as saver:
                attach_ledger(saver, ledger)
                yield saver
            return
        with _sqlite_saver(db) as saver:
            attach_ledger(saver, ledger)
            yield saver


@contextmanager
def _sqlite_saver(db: str | PathLike[str]) -> Generator[_SqliteSaver, None, None]:
    """graphloop's SQLite saver on a file, set up; for sync and async use alike."""
    conn = sqlite3.connect(_sqlite_path(db), check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
    saver = _SqliteSaver(conn, serde=CompressedSerializer())
    try:
        with opening(db):  # now, not at the first checkpoint: a read-only file is named here
            saver.setup()
        conn.execute(_UNFLUSHED_SQLITE)
        yield saver
    finally:
        saver.close()  # its thread's calls done first
        conn.close()


@asynccontextmanager
async def open_async_saver(db: DbLike) -> AsyncGenerator[BaseCheckpointSaver[str], None]:
    """Open an asyncio saver for `db`, with graphloop's ledger attached (see `open_saver`); a
    saver passed in is yielded as is (not closed)."""
    if isinstance(db, BaseCheckpointSaver):
        # SqliteSaver's async methods only raise; a bare subclass may not have them at all.
        sync_only = type(db).aget_tuple is BaseCheckpointSaver.aget_tuple  # pyright: ignore[reportUnknownMemberType]
        if (isinstance(db, SqliteSaver) and not isinstance(db, OnItsThread)) or sync_only:
            raise ConfigurationError(
                f"db={_stock_name(db)} has no async methods; pass a SQLite path or a "
                "PostgreSQL URL, or an async-capable saver such as AsyncSqliteSaver, "
                "AsyncPostgresSaver or InMemorySaver"
            )
        yield db
        return
    opened = open_ledger(db)
    # the ledger is blocking I/O: opened and closed off the event loop
    ledger = await in_db_thread(opened.__enter__)
    try:
        if is_postgres_url(db):
            _require_postgres()
            async with _postgres_async(str(db)) as saver:
                attach_ledger(saver, ledger)
                yield saver
            return
        opened_saver = _sqlite_saver(db)
        saver = await in_db_thread(opened_saver.__enter__)
        try:
            attach_ledger(saver, ledger)
            yield saver
        finally:
            await in_db_thread(opened_saver.__exit__, None, None, None)
    finally:
        await in_db_thread(opened.__exit__, None, None, None)


def _require_postgres() -> None:
    try:
        import langgraph.checkpoint.postgres  # noqa: F401  # pyright: ignore[reportUnusedImport]
        import psycopg_pool  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        raise ConfigurationError(
            "a postgresql:// database needs the postgres extra: pip install 'graphloop[postgres]'"
        ) from None


def open_ledger(db: str | PathLike[str]) -> AbstractContextManager[Ledger]:
    """Open graphloop's own tables (claims, audit, inbox, rules) in a SQLite file or at a
    PostgreSQL URL, creating them if needed."""
    if is_postgres_url(db):
        _require_postgres()
        from graphloop.checkpointers.ledger_postgres import PostgresLedger

        return PostgresLedger.connect(str(db))
    return SqliteLedger.connect(db)
