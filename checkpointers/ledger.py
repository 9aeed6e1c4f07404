"""graphloop's own tables, beside the checkpoints in the same SQLite file.

The tables are plain SQLite, made and read with sqlite-utils, so
`sqlite-utils rows graphloop.db tool_calls` shows the audit::

    tool_calls   one row per tool call: the claim that makes it run at most once, then its audit
    tool_results the result of each call of a run in progress, so a result a crash kept from
                 the checkpoint is replayed, not lost and not re-run; cleared when the run stops
    decisions    one row per decided call: what was decided, by whom, when, and a hash of what
                 was asked; the first decision for a call wins, a second raises AlreadyDecidedError
    inbox        one row per thread waiting for a decision
    tool_rules   remembered per-user rules: always allow a tool, always ask, never allow

No secret is ever written: rows hold model labels, never keys.

Example:
    >>> with Ledger.open(":memory:") as ledger:
    ...     ledger.grant("ann", "send_email", "allow")
    ...     ledger.rules("ann")
    {'send_email': 'allow'}
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Generator, Iterable, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any, Literal, TypedDict, cast, get_args

import sqlite_utils
from sqlite_utils.db import Table

from graphloop.checkpointers.errors import AlreadyDecidedError, ConfigurationError

__all__ = [
    "SCHEMA_VERSION",
    "CallStatus",
    "DecisionEntry",
    "InboxEntry",
    "Ledger",
    "Rule",
    "RuleEntry",
    "ToolCallEntry",
    "call_hash",
    "now",
]

SCHEMA_VERSION = 1
"""Version of these tables; a database written by a newer graphloop is refused, not guessed at."""

CallStatus = Literal["running", "success", "error", "timeout", "unknown", "refused", "rejected"]
"""`running`: claimed, no outcome yet (after a crash: `unknown`, never run again)."""
Rule = Literal["allow", "ask", "never"]
RULES: tuple[Rule, ...] = get_args(Rule)

_BUSY_TIMEOUT_S = 30.0


class ToolCallEntry(TypedDict):
    """One tool call: claimed before it runs, completed with its outcome."""

    thread_id: str
    call_id: str
    round: int
    tool: str
    args: dict[str, object]
    """The arguments it ran with (after an edit, the edited ones)."""
    status: CallStatus
    started_at: str
    duration_ms: float | None
    model: str
    """Label of the model that asked for the call (never its key)."""
    user_id: str | None
    user_role: str
    result_chars: int | None


class DecisionEntry(TypedDict):
    """A person's decision on one gated call."""

    thread_id: str
    call_id: str
    interrupt_id: str
    tool: str
    decision: str
    decided_by: str | None
    """Whoever the application says decided (a user id, an email)."""
    decided_at: str
    call_hash: str
    """sha256 of the tool name and arguments as they were asked (see `call_hash`)."""
    edited_hash: str | None
    """For an edit: the same hash of what was approved to run instead."""
    payload: str
    """The decision as given (JSON), so a decision recorded before a crash can be carried out."""


class InboxEntry(TypedDict):
    """A thread waiting for a decision."""

    thread_id: str
    interrupt_id: str
    calls: list[dict[str, object]]
    """The calls shown: `{"id", "name", "args"}` each."""
    question: str
    waiting_since: str
    user_id: str | None
    user_role: str


class RuleEntry(TypedDict):
    user_id: str
    tool: str
    rule: Rule
    granted_by: str | None
    granted_at: str


def now() -> str:
    """The current UTC time as ISO 8601, as every table stores it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def call_hash(name: str, args: Mapping[str, object]) -> str:
    """A stable fingerprint of a call: sha256 of its name and canonical JSON arguments.

    Example:
        >>> call_hash("add", {"b": 2, "a": 1}) == call_hash("add", {"a": 1, "b": 2})
        True
    """
    canonical = json.dumps({"name": name, "args": args}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class Ledger:
    """The claims, audit, inbox and rules of one database. Thread-safe; open with `Ledger.open`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._create_tables()

    @classmethod
    @contextmanager
    def open(cls, path: str | PathLike[str]) -> Generator[Ledger, None, None]:
        """Open (creating the tables if needed) the ledger in the SQLite file `path`."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False,
                               isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            yield cls(conn)
        finally:
            conn.close()

    # -- schema -----------------------------------------------------------------------------

    def _table(self, name: str) -> Table:
        return self._db.table(name)

    def _schema_version(self) -> int | None:
        if not self._table("graphloop_meta").exists():
            return None
        row = self._conn.execute("SELECT value FROM graphloop_meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else int(row[0])

    def _create_tables(self) -> None:
        """Create the tables unless they are there; a read only, once they are (no write lock)."""
        db = self._table
        with self._lock:
            found = self._schema_version()
            if found is not None and found > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"this database's graphloop tables are schema version {found}, written by a "
                    f"newer graphloop; this one knows version {SCHEMA_VERSION}: upgrade graphloop")
            if found == SCHEMA_VERSION:
                return
            db("graphloop_meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db("tool_calls").create(
                {"thread_id": str, "call_id": str, "round": int, "tool": str, "args": str,
                 "status": str, "started_at": str, "duration_ms": float, "model": str,
                 "user_id": str, "user_role": str, "result_chars": int},
                pk=("thread_id", "call_id"), not_null=["status", "tool"], if_not_exists=True)
            db("decisions").create(
                {"thread_id": str, "call_id": str, "interrupt_id": str, "tool": str, "decision": str,
                 "decided_by": str, "decided_at": str, "call_hash": str, "edited_hash": str,
                 "payload": str},
                pk=("thread_id", "call_id"), not_null=["decision"], if_not_exists=True)
            db("tool_results").create({"thread_id": str, "call_id": str, "result": str},
                                      pk=("thread_id", "call_id"), if_not_exists=True)
            db("inbox").create(
                {"thread_id": str, "interrupt_id": str, "calls": str, "question": str,
                 "waiting_since": str, "user_id": str, "user_role": str},
                pk="thread_id", if_not_exists=True)
            db("inbox").create_index(["waiting_since"], if_not_exists=True)
            db("tool_rules").create(
                {"user_id": str, "tool": str, "rule": str, "granted_by": str, "granted_at": str},
                pk=("user_id", "tool"), if_not_exists=True)
            self._conn.execute(
                "INSERT OR IGNORE INTO graphloop_meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),))

    @contextmanager
    def _transaction(self) -> Generator[sqlite3.Connection, None, None]:
        """One write transaction, taken at once (`BEGIN IMMEDIATE`) so checks and writes agree."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- tool calls: claims and audit -------------------------------------------------------

    def claim_call(self, entry: ToolCallEntry) -> ToolCallEntry | None:
        """Claim a call before running it: None when claimed now, else the earlier claim.

        The insert is atomic, so of two processes claiming the same call exactly one wins.
        """
        row = {**entry, "args": _json(entry["args"])}
        with self._lock:
            inserted = self._conn.execute(
                f"INSERT INTO tool_calls ({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) "
                "ON CONFLICT (thread_id, call_id) DO NOTHING", tuple(row.values())).rowcount
            return None if inserted else self.tool_call(entry["thread_id"], entry["call_id"])

    def finish_call(self, thread_id: str, call_id: str, status: CallStatus, *,
                    duration_ms: float | None = None, result: str | None = None) -> None:
        """Record the outcome of a claimed call, and keep its result until `forget_results`."""
        with self._transaction() as conn:
            conn.execute("UPDATE tool_calls SET status = ?, duration_ms = ?, result_chars = ? "
                         "WHERE thread_id = ? AND call_id = ?",
                         (status, duration_ms, None if result is None else len(result), thread_id, call_id))
            if result is not None:
                conn.execute("INSERT OR REPLACE INTO tool_results (thread_id, call_id, result) "
                             "VALUES (?, ?, ?)", (thread_id, call_id, result))

    def mark_unknown(self, thread_id: str, call_id: str) -> None:
        """A claimed call whose process stopped before its outcome: it may or may not have run."""
        with self._lock:
            self._conn.execute("UPDATE tool_calls SET status = 'unknown' WHERE thread_id = ? "
                               "AND call_id = ? AND status = 'running'", (thread_id, call_id))

    def result(self, thread_id: str, call_id: str) -> str | None:
        """The kept result of a finished call, if its run has not stopped since."""
        with self._lock:
            row = self._conn.execute("SELECT result FROM tool_results WHERE thread_id = ? AND call_id = ?",
                                     (thread_id, call_id)).fetchone()
        return None if row is None else str(row[0])

    def forget_results(self, thread_id: str) -> None:
        """Drop the kept results of `thread_id`: its checkpoint holds them now."""
        with self._lock:
            self._conn.execute("DELETE FROM tool_results WHERE thread_id = ?", (thread_id,))

    def record_call(self, entry: ToolCallEntry) -> None:
        """Record a call that was answered without running (refused or rejected); idempotent."""
        with self._lock:
            self._table("tool_calls").insert({**entry, "args": _json(entry["args"])}, ignore=True)

    def tool_call(self, thread_id: str, call_id: str) -> ToolCallEntry | None:
        rows = self._rows("tool_calls", "thread_id = ? AND call_id = ?", [thread_id, call_id])
        return _call_entry(rows[0]) if rows else None

    def tool_calls(self, thread_id: str | None = None) -> list[ToolCallEntry]:
        """The audit of tool calls, oldest first; of one thread when `thread_id` is given."""
        where, args = ("thread_id = ?", [thread_id]) if thread_id is not None else (None, [])
        return [_call_entry(r) for r in self._rows("tool_calls", where, args, "started_at, rowid")]

    # -- decisions --------------------------------------------------------------------------

    def claim_decisions(self, entries: Sequence[DecisionEntry]) -> None:
        """Record the decisions of one pause, atomically; `AlreadyDecidedError` if any exists.

        Of two processes deciding the same pause at once, exactly one succeeds. The thread
        leaves the inbox in the same transaction.
        """
        with self._transaction() as conn:
            earlier = self._decided(conn, entries)
            if earlier:
                raise AlreadyDecidedError.of(earlier)
            self._insert_decisions(conn, entries)

    def record_decisions(self, entries: Sequence[DecisionEntry]) -> None:
        """Record decisions unless already recorded (a graph resumed without the Orchestrator)."""
        with self._transaction() as conn:
            self._insert_decisions(conn, [e for e in entries if not self._decided(conn, [e])])

    def _decided(self, conn: sqlite3.Connection, entries: Sequence[DecisionEntry]) -> list[DecisionEntry]:
        found: list[DecisionEntry] = []
        for entry in entries:
            cursor = conn.execute("SELECT * FROM decisions WHERE thread_id = ? AND call_id = ?",
                                  (entry["thread_id"], entry["call_id"]))
            names = [d[0] for d in cursor.description]
            found += [cast(DecisionEntry, dict(zip(names, row, strict=True))) for row in cursor]
        return found

    def _insert_decisions(self, conn: sqlite3.Connection, entries: Sequence[DecisionEntry]) -> None:
        for entry in entries:
            conn.execute(f"INSERT INTO decisions ({', '.join(entry)}) VALUES ({', '.join('?' * len(entry))})",
                         tuple(entry.values()))
        for thread_id in {e["thread_id"] for e in entries}:
            conn.execute("DELETE FROM inbox WHERE thread_id = ?", (thread_id,))

    def decisions(self, thread_id: str | None = None) -> list[DecisionEntry]:
        """Every recorded decision, oldest first; of one thread when `thread_id` is given."""
        where, args = ("thread_id = ?", [thread_id]) if thread_id is not None else (None, [])
        return cast(list[DecisionEntry], self._rows("decisions", where, args, "decided_at, rowid"))

    # -- inbox ------------------------------------------------------------------------------

    def add_to_inbox(self, entry: InboxEntry) -> None:
        """List a paused thread, unless its calls are already decided; keeps `waiting_since`."""
        row = {**entry, "calls": _json(entry["calls"])}
        ids = [str(c["id"]) for c in entry["calls"]]
        with self._lock:
            self._conn.execute(
                f"INSERT INTO inbox ({', '.join(row)}) SELECT {', '.join('?' * len(row))} "
                f"WHERE NOT EXISTS (SELECT 1 FROM decisions WHERE thread_id = ? "
                f"AND call_id IN ({', '.join('?' * len(ids))})) "
                "ON CONFLICT (thread_id) DO UPDATE SET interrupt_id = excluded.interrupt_id, "
                "calls = excluded.calls, question = excluded.question, "
                "waiting_since = excluded.waiting_since "
                "WHERE inbox.interrupt_id != excluded.interrupt_id",
                (*row.values(), entry["thread_id"], *ids))

    def remove_from_inbox(self, thread_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM inbox WHERE thread_id = ?", (thread_id,))

    def inbox(self, user_id: str | None = None) -> list[InboxEntry]:
        """Threads waiting for a decision, longest waiting first; of one user when given."""
        where, args = ("user_id = ?", [user_id]) if user_id is not None else (None, [])
        return [cast(InboxEntry, {**r, "calls": json.loads(r["calls"])})
                for r in self._rows("inbox", where, args, "waiting_since")]

    def inbox_entry(self, thread_id: str) -> InboxEntry | None:
        rows = self._rows("inbox", "thread_id = ?", [thread_id])
        return cast(InboxEntry, {**rows[0], "calls": json.loads(rows[0]["calls"])}) if rows else None

    # -- remembered rules -------------------------------------------------------------------

    def grant(self, user_id: str, tool: str, rule: Rule, *, granted_by: str | None = None) -> None:
        """Remember `rule` for `user_id` and `tool` (replacing an earlier rule)."""
        if rule not in RULES:
            raise ConfigurationError(f"rule={rule!r} is not one of {list(RULES)!r}")
        with self._lock:
            row = RuleEntry(user_id=user_id, tool=tool, rule=rule, granted_by=granted_by, granted_at=now())
            self._table("tool_rules").upsert(dict(row), pk=("user_id", "tool"))

    def revoke(self, user_id: str, tool: str) -> bool:
        """Forget the rule for `user_id` and `tool`; False when there was none."""
        with self._lock:
            return self._conn.execute("DELETE FROM tool_rules WHERE user_id = ? AND tool = ?",
                                      (user_id, tool)).rowcount > 0

    def rules(self, user_id: str) -> dict[str, Rule]:
        """`user_id`'s remembered rules, tool → rule."""
        return {r["tool"]: r["rule"] for r in self.rule_entries(user_id)}

    def rule_entries(self, user_id: str | None = None) -> list[RuleEntry]:
        """Every remembered rule (of one user when given), with who granted it and when."""
        where, args = ("user_id = ?", [user_id]) if user_id is not None else (None, [])
        return cast(list[RuleEntry], self._rows("tool_rules", where, args, "user_id, tool"))

    # -- reading ----------------------------------------------------------------------------

    def _rows(self, table: str, where: str | None, args: Iterable[object],
              order_by: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._table(table).rows_where(where, list[Any](args), order_by=order_by))  # pyright: ignore[reportUnknownMemberType]  # where_args is an unparameterised Sequence


def _call_entry(row: Mapping[str, Any]) -> ToolCallEntry:
    return cast(ToolCallEntry, {**row, "args": json.loads(row["args"])})
