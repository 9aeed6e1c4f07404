"""One driver per thread: a run holds its thread from the first read to the last write.

Two runs of one thread at once (a double submit, two tabs, two workers) would each read the
same checkpoint and write their own turn after it: both callers told they succeeded, one turn
missing from the saved thread. So a run first takes its thread, and a second one is refused
at once with `ThreadBusyError` (or waits for it, when asked to).

The hold is one the operating system or the database lets go of when its holder dies, so a
`kill -9` never leaves a thread locked:

- SQLite: a one-byte POSIX lock (`fcntl.lockf`) in a file beside the database
  (`<db>-drivers`, like SQLite's own `-wal` and `-shm`), at an offset hashed from the thread
  id. POSIX locks are per process and are all dropped when any descriptor of the file is
  closed, so each process keeps one descriptor per file open for good, and threads of one
  process are told apart in memory.
- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) on a connection of its own,
  held for the run.
- Anything else (a ledger in memory): in memory only, which is all there is to share.

A run that already holds its thread (the Orchestrator takes it before reading the state) is
not stopped by its own hold: holds are re-entrant within one task (a context variable).
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import hashlib
import logging
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Generator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from graphloop.checkpointers.blocking import in_db_thread
from graphloop.checkpointers.errors import (
    ConfigurationError,
    GraphloopError,
    ThreadBusyError,
    UnusableDatabaseError,
)
from graphloop.checkpointers.redact import redact

__all__ = ["Drivers", "as_another_caller", "drivers_at"]

logger = logging.getLogger(__name__)

_POLL_S = 0.05
"""How often a caller that waits for a thread asks again."""

_held: contextvars.ContextVar[frozenset[tuple[str, str, object]]] = contextvars.ContextVar(
    "graphloop_threads_held", default=frozenset())
"""The holds of the current task: (database, thread, hold)."""

_local_lock = threading.Lock()
_local: dict[tuple[str, str], tuple[int, object]] = {}
"""Threads held in this process, by (database, thread): the holder's pid (a forked child
inherits the dict but not the locks) and its hold (an object of its own)."""


def _key(thread_id: str) -> int:
    """A 62-bit number for `thread_id`: a lock offset, or an advisory lock key."""
    encoded = thread_id.encode("utf-8", "surrogatepass")  # any str, lone surrogates included
    return int.from_bytes(hashlib.blake2b(encoded, digest_size=8).digest()) >> 2


def _seconds(wait: object) -> float:
    """`wait` as seconds to wait for a thread: a finite number, 0 or more."""
    try:
        seconds = float(wait)  # pyright: ignore[reportArgumentType]  # checked here
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigurationError(f"wait must be a number of seconds, 0 or more; got {wait!r}")
    return seconds


class Drivers(ABC):
    """Who drives which thread of one database."""

    def __init__(self, where: str) -> None:
        self.where = where
        """The database, as a key (a path or a URL)."""

    def holds(self, thread_id: str) -> bool:
        """Whether the current task holds `thread_id` now (a mark left in a context by a hold
        that has ended does not count)."""
        entry = _local.get((self.where, thread_id))
        return entry is not None and entry[0] == os.getpid() and (self.where, thread_id, entry[1]) in _held.get()

    @contextmanager
    def drive(self, thread_id: str, wait: float = 0.0, *, reentrant: bool = True) -> Generator[None, None, None]:
        """Hold `thread_id` for the block; `ThreadBusyError` if another caller holds it for
        longer than `wait` seconds. With `reentrant=False` a hold of the current task counts
        as another caller's, refused at once (waiting for itself, the task would never end):
        a run starts only where no run of its thread is going on, not even its own."""
        wait = _seconds(wait)
        if self._held_here(thread_id, reentrant):
            yield
            return
        deadline = time.monotonic() + wait
        while (taken := self._take(thread_id)) is None:
            if time.monotonic() >= deadline:
                raise self._busy(thread_id, wait)
            time.sleep(_POLL_S)
        mark = self._mark(thread_id, taken)
        try:
            yield
        finally:
            self._unmark(mark)
            self._give_back(thread_id, taken[1])

    @asynccontextmanager
    async def adrive(self, thread_id: str, wait: float = 0.0, *, reentrant: bool = True) -> AsyncGenerator[None, None]:
        """`drive`, waiting without blocking the event loop."""
        wait = _seconds(wait)
        if self._held_here(thread_id, reentrant):
            yield
            return
        deadline = time.monotonic() + wait
        while (taken := await self._atake(thread_id)) is None:
            if time.monotonic() >= deadline:
                raise self._busy(thread_id, wait)
            await asyncio.sleep(_POLL_S)
        mark = self._mark(thread_id, taken)
        try:
            yield
        finally:
            self._unmark(mark)
            # off the event loop, and through a cancellation: a hold is always given back
            await asyncio.shield(in_db_thread(self._give_back, thread_id, taken[1]))

    def _held_here(self, thread_id: str, reentrant: bool) -> bool:
        """Whether the current task holds `thread_id` already and may go on; not `reentrant`,
        that hold is refused as another caller's (waiting for itself, the task would never end)."""
        if not self.holds(thread_id):
            return False
        if not reentrant:
            raise self._busy(thread_id, 0.0, itself=True)
        return True

    async def _atake(self, thread_id: str) -> tuple[object, object] | None:
        """`_take` on a database thread. Cancelled meanwhile, the take still completes there;
        what it took is given back before the cancellation goes on."""
        taking = asyncio.ensure_future(in_db_thread(self._take, thread_id))
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            taken = await taking
            if taken is not None:
                await in_db_thread(self._give_back, thread_id, taken[1])
            raise

    def _mark(self, thread_id: str, taken: tuple[object, object]) -> tuple[str, str, object]:
        """Note in this context that it holds `thread_id` (see `holds`)."""
        mark = (self.where, thread_id, taken[0])
        _held.set(_held.get() | {mark})
        return mark

    @staticmethod
    def _unmark(mark: tuple[str, str, object]) -> None:
        # not `ContextVar.reset`: a server may step an async generator from another context
        _held.set(_held.get() - {mark})

    def _busy(self, thread_id: str, wait: float, *, itself: bool = False) -> ThreadBusyError:
        waited = f" (waited {wait:g} s)" if wait else ""
        if itself:
            return ThreadBusyError(
                f"thread {thread_id!r} is being run by this same task (a run started while reading "
                "the events of another run of it); nothing was read or stored. Start it after that "
                "run has finished", thread_id=thread_id)
        return ThreadBusyError(
            f"thread {thread_id!r} is being run by another caller{waited}; nothing was read or "
            "stored. Try again when that run is done, or wait for it (Orchestrator: wait=seconds; "
            "a compiled graph: config['configurable']['wait_for_thread'] = seconds)", thread_id=thread_id)

    def _take(self, thread_id: str) -> tuple[object, object] | None:
        """Take `thread_id` now: the hold and a token to give it back with, or None if it is
        held."""
        key, hold = (self.where, thread_id), object()
        with _local_lock:  # first among this process's callers
            entry = _local.get(key)
            if entry is not None and entry[0] == os.getpid():
                return None
            _local[key] = (os.getpid(), hold)
        try:
            token = self._take_shared(thread_id)  # then among processes
        except Exception as exc:  # psycopg's errors, lockf's ENOLCK: named, in one line
            self._forget(key)
            if isinstance(exc, GraphloopError):
                raise
            raise UnusableDatabaseError(f"db {redact(self.where)!r}: cannot hold thread {thread_id!r} "
                                        f"({type(exc).__name__}: {redact(str(exc)).splitlines()[0] if str(exc) else ''}); "
                                        "check that the database is reachable", path=redact(self.where)) from None
        except BaseException:
            self._forget(key)
            raise
        if token is None:
            self._forget(key)
            return None
        return hold, token

    def _give_back(self, thread_id: str, token: object) -> None:
        try:
            self._give_back_shared(thread_id, token)
        finally:
            self._forget((self.where, thread_id))

    @staticmethod
    def _forget(key: tuple[str, str]) -> None:
        with _local_lock:
            _local.pop(key, None)

    @abstractmethod
    def _take_shared(self, thread_id: str) -> object | None:
        """Take `thread_id` from other processes; None if one holds it."""

    @abstractmethod
    def _give_back_shared(self, thread_id: str, token: object) -> None:
        """Let other processes have `thread_id` again."""


class _InMemory(Drivers):
    def _take_shared(self, thread_id: str) -> object | None:
        return True

    def _give_back_shared(self, thread_id: str, token: object) -> None:
        pass


class _LockFile(Drivers):
    """POSIX byte locks in `<db>-drivers` (see the module docstring)."""

    _files: dict[str, int] = {}  # noqa: RUF012  # one descriptor per file and process, never closed

    def _descriptor(self) -> int:
        path = f"{self.where}-drivers"
        with _local_lock:
            if path not in self._files:
                self._files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            return self._files[path]

    def _take_shared(self, thread_id: str) -> object | None:
        import fcntl

        try:
            descriptor = self._descriptor()
        except OSError as exc:
            raise UnusableDatabaseError(
                f"db {self.where!r}: cannot open {self.where + '-drivers'!r}, the file where runs hold "
                f"their threads ({exc.strerror}); let this user write the database's folder",
                path=self.where) from None
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _key(thread_id))
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
            return None
        return True

    def _give_back_shared(self, thread_id: str, token: object) -> None:
        import fcntl

        fcntl.lockf(self._descriptor(), fcntl.LOCK_UN, 1, _key(thread_id))


class _Advisory(Drivers):
    """PostgreSQL session advisory locks, all on one connection per database and process
    (locks of one session stack, so 200 runs at once take one connection), open only while
    this process holds a thread of that database.

    The session must outlive every hold: it is opened with the server's idle timeouts off and
    TCP keepalives on. Should it drop all the same (a failover, `pg_terminate_backend`), its
    locks go with it; the next use reconnects and takes back the threads still held, and a
    thread another process took meanwhile is logged as lost.
    """

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self._conn: Any = None
        self._use = threading.Lock()
        self._threads: set[str] = set()

    def _connection(self) -> Any:
        from psycopg import Connection

        if self._conn is None:
            conn = Connection.connect(self.where, autocommit=True, connect_timeout=10, keepalives=1,
                                      keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
            conn.execute("SET idle_in_transaction_session_timeout = 0")
            if conn.info.server_version >= 140000:
                conn.execute("SET idle_session_timeout = 0")
            for thread_id in self._threads:  # after a drop: take back what this process holds
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_key(thread_id),)).fetchone()
                if not (row and row[0]):
                    logger.error("thread %r: the hold on it was lost with its PostgreSQL session, and "
                                 "another caller holds it now", thread_id)
            self._conn = conn
        return self._conn

    def _ask(self, sql: str, thread_id: str) -> bool:
        """Run `sql` (with `_use` held), on a new session if the last one dropped."""
        from psycopg import OperationalError

        for attempt in range(2):
            try:
                row = self._connection().execute(sql, (_key(thread_id),)).fetchone()
                return bool(row and row[0])
            except OperationalError:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("returned or raised")

    def _close_if_idle(self) -> None:
        if not self._threads and self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the session (at exit: the process holds nothing any more)."""
        with self._use:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _take_shared(self, thread_id: str) -> object | None:
        with self._use:
            taken = self._ask("SELECT pg_try_advisory_lock(%s)", thread_id)
            if taken:
                self._threads.add(thread_id)
            return True if taken else None  # the session stays for a caller that asks again

    def _give_back_shared(self, thread_id: str, token: object) -> None:
        from psycopg import OperationalError

        with self._use:
            self._threads.discard(thread_id)
            try:
                if self._conn is not None:
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (_key(thread_id),))
            except OperationalError:  # the session is gone, and the lock with it
                self._conn = None
            finally:
                self._close_if_idle()


def as_another_caller() -> None:
    """From here on, the current context holds no thread: code it runs (a tool, and whatever
    the tool starts) must take a thread like any other caller, even the thread of the run
    that called it, and so is refused while that run holds it."""
    _held.set(frozenset())


_made: dict[str, Drivers] = {}


@atexit.register
def _close_sessions() -> None:
    for drivers in list(_made.values()):
        if isinstance(drivers, _Advisory):
            drivers.close()


def drivers_at(where: str | None, *, postgres: bool = False) -> Drivers:
    """The drivers of the database at `where` (a SQLite path or a PostgreSQL URL), one object
    per database and process; for None, "" or ":memory:" (a database in this process only),
    a new one each time."""
    if not where or where == ":memory:":
        return _InMemory(f"memory:{id(object())}:{time.monotonic_ns()}")
    with _local_lock:
        if where not in _made:
            kind = _Advisory if postgres else _LockFile if os.name == "posix" else _InMemory
            _made[where] = kind(where)
        return _made[where]
