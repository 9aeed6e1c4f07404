"""graphloop's own tables, beside the checkpoints in the same database.

In SQLite they are plain tables made with sqlite-utils, so `sqlite-utils rows graphloop.db
tool_calls` shows the audit; in PostgreSQL the same tables live beside langgraph's
(`graphloop.checkpointers.ledger_postgres`). The tables::

    tool_calls   one row per tool call: the claim that makes it run at most once, then its audit
    tool_results the result of each call of a run in progress, so a result a crash kept from
                 the checkpoint is replayed, not lost and not re-run; cleared round by round
                 (the next round's claims) and when the run stops
    decisions    one row per decided call: what was decided, by whom, when, and a hash of what
                 was asked; the first decision for a call wins, a second raises AlreadyDecidedError
    inbox        one row per thread waiting for a decision
    tool_rules   remembered per-user rules: always allow a tool, always ask, never allow
    model_calls  one row per request to a model: tokens in and out, latency, how it ended
                 (`graphloop.checkpointers.model_calls`)

No secret is ever written: rows hold model labels, never keys.

What is flushed to disk, and when (the rule is enforced here, by `_transaction(flush=True)`, and
in `graphloop.checkpointers.savers`):

- A call's claim, and a person's decisions and remembered rules, are flushed before anything
  they protect happens (SQLite: the commit runs with `synchronous=FULL`; PostgreSQL:
  `synchronous_commit=on`, whatever the server's default). The call runs only after its claim
  is on disk. A run that pauses is flushed as it ends (`forget_results(flush=True)`), so the
  pause a person answers is on disk.
- Everything else, checkpoints included, is committed without waiting for the disk (SQLite in
  WAL mode with `synchronous=NORMAL`; PostgreSQL `synchronous_commit=off`). A flush writes out
  every commit before it too: one WAL serves the whole database.

So a `kill -9` of the process loses nothing (every commit is in the WAL, which the operating
system keeps). A power cut (or, on PostgreSQL, a crash of the server) loses at most the commits
since the last flush: the last steps of a run (a run that answered may be back before its
answer), never a claim, a decision, a rule or a pause. On resume, a lost step is simply run again (a model call asked again); a call
whose claim was kept but whose result was lost is not run again: the model is told its outcome
is unknown. A call whose claim was lost had not started.

Example:
    >>> from graphloop.checkpointers import open_ledger
    >>> with open_ledger(":memory:") as ledger:
    ...     ledger.grant("ann", "send_email", "allow")
    ...     ledger.rules("ann")
    {'send_email': 'allow'}
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence, Sized
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast

from graphloop.checkpointers import model_calls
from graphloop.checkpointers.blocking import Held
from graphloop.checkpointers.drivers import Drivers
from graphloop.checkpointers.encoding import dumps
from graphloop.checkpointers.errors import AlreadyDecidedError, ConfigurationError
from graphloop.checkpointers.rows import (
    RULES,
    CallStatus,
    DecisionEntry,
    InboxEntry,
    ModelCallEntry,
    Rule,
    RuleEntry,
    ToolCallEntry,
    UsageTotals,
    call_hash,
    now,
)

__all__ = [
    "SCHEMA_VERSION",
    "CallStatus",
    "Cursor",
    "DecisionEntry",
    "InboxEntry",
    "Ledger",
    "ModelCallEntry",
    "Rule",
    "RuleEntry",
    "ToolCallEntry",
    "UsageTotals",
    "call_hash",
    "now",
]

SCHEMA_VERSION = 1
"""Version of these tables; a database written by a newer graphloop is refused, not guessed at."""


def is_postgres_url(db: object) -> bool:
    """Whether `db` names a PostgreSQL database (`postgresql://...` or `postgres://...`)."""
    return isinstance(db, str) and db.startswith(("postgres://", "postgresql://"))


class Cursor(Protocol):
    """What the ledger needs of a database connection inside one transaction."""

    def run(self, sql: str, args: Sequence[object] = ()) -> int:
        """Execute `sql` (with `?` placeholders); the number of rows it changed."""
        ...

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[dict[str, Any]]:
        """The rows of a query, as dicts."""
        ...


class Ledger(Held, ABC):
    """The claims, audit, inbox and rules of one database. Thread-safe.

    `open_ledger(db)` opens one for a SQLite file or a PostgreSQL URL. The statements are the
    same on both (`?` placeholders, `ON CONFLICT`); a subclass supplies the connection and
    the tables. A late tool call `hold`s it open past its `with` block (`Held`).
    """

    order_key = "rowid"
    """A column that orders rows as they were inserted."""

    drivers: Drivers
    """Who runs which thread of this database now: one driver per thread
    (`graphloop.checkpointers.drivers`)."""

    @abstractmethod
    def _transaction(self, *, write: bool = True, flush: bool = False) -> AbstractContextManager[Cursor]:
        """One transaction; a write transaction takes the write lock at once. With `flush`, its
        commit is on disk (through a power cut) before it returns: the rule in the module
        docstring says which writes need it."""

    def _run(self, sql: str, args: Sequence[object] = ()) -> int:
        with self._transaction() as tx:
            return tx.run(sql, args)

    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[dict[str, Any]]:
        with self._transaction(write=False) as tx:
            return tx.rows(sql, args)

    @staticmethod
    def check_version(found: int | None) -> None:
        """Refuse tables written by a newer graphloop (`ConfigurationError`)."""
        if found is not None and found > SCHEMA_VERSION:
            raise ConfigurationError(
                f"this database's graphloop tables are schema version {found}, written by a "
                f"newer graphloop; this one knows version {SCHEMA_VERSION}: upgrade graphloop")

    # -- tool calls: claims and audit -------------------------------------------------------

    def claim_call(self, entry: ToolCallEntry) -> ToolCallEntry | None:
        """Claim a call before running it: None when claimed now, else the earlier claim.

        The insert is atomic, so of two processes claiming the same call exactly one wins.
        Results kept for calls of earlier rounds go in the same transaction: the checkpoint
        holds them by now, and a table that empties once per round reuses its pages instead
        of leaving a run's worth of free pages behind.
        """
        with self._transaction(flush=True) as tx:  # on disk before the call runs
            inserted = _insert_call(tx, entry)
            if inserted and entry.get("round"):
                tx.run("DELETE FROM tool_results WHERE thread_id = ? AND EXISTS (SELECT 1 FROM tool_calls c "
                       "WHERE c.thread_id = tool_results.thread_id AND c.call_id = tool_results.call_id "
                       "AND c.round < ?)", (entry["thread_id"], entry["round"]))
        return None if inserted else self.tool_call(entry["thread_id"], entry["call_id"])

    def finish_call(self, thread_id: str, call_id: str, status: CallStatus, *,
                    duration_ms: float | None = None, result: str | None = None) -> None:
        """Record the outcome of a claimed call, and keep its result until the next round's
        first claim or `forget_results`."""
        with self._transaction() as tx:
            tx.run("UPDATE tool_calls SET status = ?, duration_ms = ?, result_chars = ? "
                   "WHERE thread_id = ? AND call_id = ?",
                   (status, duration_ms, None if result is None else len(result), thread_id, call_id))
            if result is not None:
                tx.run("INSERT INTO tool_results (thread_id, call_id, result) VALUES (?, ?, ?) "
                       "ON CONFLICT (thread_id, call_id) DO UPDATE SET result = excluded.result",
                       (thread_id, call_id, result))

    def mark_unknown(self, thread_id: str, call_id: str) -> None:
        """A claimed call whose process stopped before its outcome: it may or may not have run."""
        self._run("UPDATE tool_calls SET status = 'unknown' WHERE thread_id = ? AND call_id = ? "
                  "AND status = 'running'", (thread_id, call_id))

    def finish_late(self, thread_id: str, call_id: str, status: CallStatus, *, duration_ms: float,
                    result_chars: int | None) -> None:
        """Record the outcome of a `late` call (`late_success` or `late_error`) when it arrives."""
        self._run("UPDATE tool_calls SET status = ?, duration_ms = ?, result_chars = ? "
                  "WHERE thread_id = ? AND call_id = ? AND status = 'late'",
                  (status, duration_ms, result_chars, thread_id, call_id))

    def late_twin(self, thread_id: str, tool: str, args: Mapping[str, object]) -> ToolCallEntry | None:
        """A `late` call of `thread_id` with this tool and these arguments (`call_hash`)."""
        wanted = call_hash(tool, args)
        rows = self._rows(f"SELECT {_CALL_COLUMNS} FROM tool_calls WHERE thread_id = ? AND tool = ? "
                          "AND status = 'late'", (thread_id, tool))
        return next((e for e in map(_call_entry, rows) if call_hash(tool, e["args"]) == wanted), None)

    def result(self, thread_id: str, call_id: str) -> str | None:
        """The kept result of a finished call, if its run has not stopped since."""
        rows = self._rows("SELECT result FROM tool_results WHERE thread_id = ? AND call_id = ?",
                          (thread_id, call_id))
        return str(rows[0]["result"]) if rows else None

    def forget_results(self, thread_id: str, *, flush: bool = False) -> None:
        """Drop the kept results of `thread_id`: its checkpoint holds them now. With `flush`, on
        disk before it returns, and with it every checkpoint before (a run that pauses: the
        pause a person will answer)."""
        with self._transaction(flush=flush) as tx:
            tx.run("DELETE FROM tool_results WHERE thread_id = ?", (thread_id,))

    def record_call(self, entry: ToolCallEntry) -> None:
        """Record a call that was answered without running (refused or rejected); idempotent."""
        with self._transaction() as tx:
            _insert_call(tx, entry)

    def tool_call(self, thread_id: str, call_id: str) -> ToolCallEntry | None:
        rows = self._rows(f"SELECT {_CALL_COLUMNS} FROM tool_calls WHERE thread_id = ? AND call_id = ?",
                          (thread_id, call_id))
        return _call_entry(rows[0]) if rows else None

    def tool_calls(self, thread_id: str | None = None) -> list[ToolCallEntry]:
        """The audit of tool calls, oldest first; of one thread when `thread_id` is given."""
        where, args = _where("thread_id", thread_id)
        return [_call_entry(r) for r in self._rows(
            f"SELECT {_CALL_COLUMNS} FROM tool_calls{where} ORDER BY started_at, {self.order_key}", args)]

    # -- model calls ------------------------------------------------------------------------

    def record_model_calls(self, entries: Sequence[ModelCallEntry]) -> None:
        """Record requests to models (`graphloop.nodes.usage`); not flushed: a power cut may
        lose the last ones, never a claim."""
        with self._transaction() as tx:
            model_calls.insert(tx, entries)

    def model_calls(self, thread_id: str | None = None, run_id: str | None = None) -> list[ModelCallEntry]:
        """Every request to a model, oldest first; of one thread (and run) when given."""
        with self._transaction(write=False) as tx:
            return model_calls.rows(tx, self.order_key, thread_id, run_id)

    def model_calls_after(self, thread_id: str, skip: int) -> tuple[int, int, int]:
        """How many `model_calls` rows `thread_id` has after its first `skip`, and their tokens
        in and out (for limits: what a failed round spent)."""
        with self._transaction(write=False) as tx:
            return model_calls.after(tx, self.order_key, thread_id, skip)

    def usage(self, *, thread_id: str | None = None, run_id: str | None = None, since: str | None = None,
              by: model_calls.UsageGroup | None = None) -> list[UsageTotals]:
        """Model calls and tokens summed: over all rows (one sum), or per user, model or thread
        (`by`), largest first; of one thread or run, or from `since` (an ISO time) on."""
        with self._transaction(write=False) as tx:
            return model_calls.totals(tx, thread_id=thread_id, run_id=run_id, since=since, by=by)

    # -- decisions --------------------------------------------------------------------------

    def claim_decisions(self, entries: Sequence[DecisionEntry]) -> None:
        """Record the decisions of one pause, atomically; `AlreadyDecidedError` if any exists.

        Of two processes deciding the same pause at once, exactly one succeeds. The thread
        stays in the inbox, listed as decided, until the decisions are carried out.
        """
        with self._transaction(flush=True) as tx:  # on disk before anything is carried out
            for entry in entries:
                if not _insert_new(tx, "decisions", entry):
                    raise AlreadyDecidedError.of(self._decided(tx, entries))

    def record_decisions(self, entries: Sequence[DecisionEntry]) -> None:
        """Record decisions unless these calls have some already (the Orchestrator records its
        own first, with who decided; a process that stopped left them); `AlreadyDecidedError`
        when a recorded one is another decision (a second client decided the same pause)."""
        with self._transaction(flush=True) as tx:  # on disk before anything is carried out
            for entry in entries:
                _insert_new(tx, "decisions", entry)
            recorded = self._decided(tx, entries)
        mine = {e["call_id"]: json.loads(e["payload"]) for e in entries}
        others = [r for r in recorded if json.loads(r["payload"]) != mine[r["call_id"]]]
        if others:
            raise AlreadyDecidedError.of(others)

    @staticmethod
    def _decided(tx: Cursor, entries: Sequence[DecisionEntry]) -> list[DecisionEntry]:
        return [cast(DecisionEntry, row) for e in entries for row in tx.rows(
            f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE thread_id = ? AND call_id = ?",
            (e["thread_id"], e["call_id"]))]

    def refuse_carried_out(self, thread_id: str, call_ids: Sequence[str]) -> None:
        """`AlreadyDecidedError` when a call of `call_ids` was already answered.

        A call is answered once it has a row in `tool_calls` (claimed to run, rejected,
        answered by a person, abandoned when the user went on or dismissed it). A resume that
        reaches its pause again can only come from an earlier checkpoint of the thread: a
        second tab, a double submit, a view from before the user went on.
        """
        with self._transaction(write=False) as tx:
            answered = tx.rows(f"SELECT call_id, tool, status FROM tool_calls WHERE thread_id = ? "
                               f"AND call_id IN ({_marks(call_ids)})", (thread_id, *call_ids))
            decided = _decisions_in(tx, thread_id, call_ids) if answered else []
        if answered:
            raise AlreadyDecidedError.carried_out(thread_id, answered, decided)

    def decisions_of(self, thread_id: str, call_ids: Sequence[str]) -> list[DecisionEntry]:
        """The recorded decisions on these calls of `thread_id`."""
        with self._transaction(write=False) as tx:
            return _decisions_in(tx, thread_id, call_ids)

    def decisions(self, thread_id: str | None = None) -> list[DecisionEntry]:
        """Every recorded decision, oldest first; of one thread when `thread_id` is given."""
        where, args = _where("thread_id", thread_id)
        return cast(list[DecisionEntry], self._rows(
            f"SELECT {_DECISION_COLUMNS} FROM decisions{where} ORDER BY decided_at, {self.order_key}", args))

    # -- inbox ------------------------------------------------------------------------------

    def add_to_inbox(self, entry: InboxEntry) -> None:
        """List a paused thread, unless its calls are already decided; keeps `waiting_since`."""
        row = {**entry, "calls": dumps(entry["calls"])}
        ids = [str(c["id"]) for c in entry["calls"]]
        self._run(
            f"INSERT INTO inbox ({', '.join(row)}) SELECT {_marks(row)} "
            f"WHERE NOT EXISTS (SELECT 1 FROM decisions WHERE thread_id = ? "
            f"AND call_id IN ({', '.join('?' * len(ids))})) "
            "ON CONFLICT (thread_id) DO UPDATE SET interrupt_id = excluded.interrupt_id, "
            "calls = excluded.calls, question = excluded.question, "
            "waiting_since = excluded.waiting_since "
            "WHERE inbox.interrupt_id != excluded.interrupt_id",
            (*row.values(), entry["thread_id"], *ids))

    def remove_from_inbox(self, thread_id: str) -> None:
        self._run("DELETE FROM inbox WHERE thread_id = ?", (thread_id,))

    def inbox(self, user_id: str | None = None) -> list[InboxEntry]:
        """Threads waiting for a decision (or for their recorded decisions to be carried out:
        `decided`), longest waiting first; of one user when given."""
        where, args = _where("user_id", user_id)
        return [_inbox_entry(r) for r in self._rows(f"{_INBOX_SELECT}{where} ORDER BY waiting_since", args)]

    def inbox_entry(self, thread_id: str) -> InboxEntry | None:
        rows = self._rows(f"{_INBOX_SELECT} WHERE thread_id = ?", (thread_id,))
        return _inbox_entry(rows[0]) if rows else None

    # -- threads and retention --------------------------------------------------------------

    def thread_ids(self) -> list[str]:
        """Every thread with a checkpoint (langgraph's SQLite and Postgres savers both keep
        them in a `checkpoints` table with a `thread_id` column)."""
        return [str(r["thread_id"]) for r in self._rows(
            "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id")]

    def forget_thread(self, thread_id: str, *, audit: bool) -> None:
        """Remove what the ledger holds for a deleted thread; its audit rows (tool calls,
        decisions, model calls) too if `audit`."""
        with self._transaction() as tx:
            for table in ("tool_results", "inbox", *(("tool_calls", "decisions", "model_calls") if audit else ())):
                tx.run(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))

    @abstractmethod
    def reclaim_space(self) -> None:
        """Give freed pages back (`VACUUM` in SQLite; autovacuum does it in PostgreSQL)."""

    # -- remembered rules -------------------------------------------------------------------

    def grant(self, user_id: str, tool: str, rule: Rule, *, granted_by: str | None = None) -> None:
        """Remember `rule` for `user_id` and `tool` (replacing an earlier rule)."""
        if rule not in RULES:
            raise ConfigurationError(f"rule={rule!r} is not one of {list(RULES)!r}")
        with self._transaction(flush=True) as tx:  # a person's rule: on disk before it is relied on
            tx.run("INSERT INTO tool_rules (user_id, tool, rule, granted_by, granted_at) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, tool) DO UPDATE SET "
                   "rule = excluded.rule, granted_by = excluded.granted_by, granted_at = excluded.granted_at",
                   (user_id, tool, rule, granted_by, now()))

    def revoke(self, user_id: str, tool: str) -> bool:
        """Forget the rule for `user_id` and `tool`; False when there was none."""
        with self._transaction(flush=True) as tx:  # a person's rule: on disk before it is relied on
            return tx.run("DELETE FROM tool_rules WHERE user_id = ? AND tool = ?", (user_id, tool)) > 0

    def rules(self, user_id: str) -> dict[str, Rule]:
        """`user_id`'s remembered rules, tool → rule."""
        return {r["tool"]: r["rule"] for r in self.rule_entries(user_id)}

    def rule_entries(self, user_id: str | None = None) -> list[RuleEntry]:
        """Every remembered rule (of one user when given), with who granted it and when."""
        where, args = _where("user_id", user_id)
        return cast(list[RuleEntry], self._rows(
            f"SELECT user_id, tool, rule, granted_by, granted_at FROM tool_rules{where} "
            "ORDER BY user_id, tool", args))


_CALL_COLUMNS = ", ".join(ToolCallEntry.__annotations__)
_DECISION_COLUMNS = ", ".join(DecisionEntry.__annotations__)
_INBOX_SELECT = (
    f"SELECT {', '.join(k for k in InboxEntry.__annotations__ if k != 'decided')}, EXISTS (SELECT 1 "
    "FROM decisions d WHERE d.thread_id = inbox.thread_id AND d.interrupt_id = inbox.interrupt_id) "
    "AS decided FROM inbox")


def _marks(row: Sized) -> str:
    return ", ".join("?" * len(row))


def _decisions_in(tx: Cursor, thread_id: str, call_ids: Sequence[str]) -> list[DecisionEntry]:
    """The recorded decisions on these calls of `thread_id`."""
    return cast(list[DecisionEntry], tx.rows(
        f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE thread_id = ? AND call_id IN ({_marks(call_ids)})",
        (thread_id, *call_ids)))


def _insert_new(tx: Cursor, table: str, row: Mapping[str, object]) -> int:
    """Insert `row` unless its (thread_id, call_id) is there already; 1 if inserted, else 0."""
    return tx.run(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({_marks(row)}) "
                  "ON CONFLICT (thread_id, call_id) DO NOTHING", tuple(row.values()))


def _insert_call(tx: Cursor, entry: ToolCallEntry) -> int:
    return _insert_new(tx, "tool_calls", {**entry, "args": dumps(entry["args"])})


def _where(column: str, value: str | None) -> tuple[str, tuple[object, ...]]:
    return (f" WHERE {column} = ?", (value,)) if value is not None else ("", ())


def _call_entry(row: Mapping[str, Any]) -> ToolCallEntry:
    return cast(ToolCallEntry, {**row, "args": json.loads(row["args"])})


def _inbox_entry(row: Mapping[str, Any]) -> InboxEntry:
    return cast(InboxEntry, {**row, "calls": json.loads(row["calls"]), "decided": bool(row["decided"])})
