"""The approvals side of a database: who waits for a decision, remembered rules, the audit.

Usable on its own (an approval UI needs no models or tools), or as `Orchestrator.approvals`.

Example:
    >>> approvals = Approvals(tmp_db)                                   # doctest: +SKIP
    >>> approvals.grant("ann", "send_email", "allow", granted_by="ann")  # doctest: +SKIP
    >>> [e["thread_id"] for e in approvals.pending()]                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Collection, Generator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from os import PathLike
from typing import get_args

from graphloop.checkpointers import (
    ConfigurationError,
    DecisionEntry,
    InboxEntry,
    Ledger,
    ModelCallEntry,
    Rule,
    RuleEntry,
    ToolCallEntry,
    UsageGroup,
    UsageTotals,
    open_ledger,
)

__all__ = ["Approvals"]


class Approvals:
    """Read the inbox and the audit, and keep per-user tool rules, in the database `db`.

    Args:
        db: The SQLite file or PostgreSQL URL the runs use.
        tools: Known tool names; when given, rules for other names are refused.
    """

    def __init__(self, db: str | PathLike[str], tools: Collection[str] | None = None) -> None:
        self.db = db
        self.tools = tools

    @contextmanager
    def _ledger(self) -> Generator[Ledger, None, None]:
        with open_ledger(self.db) as ledger:
            yield ledger

    def pending(self, user_id: str | None = None) -> list[InboxEntry]:
        """Threads waiting for a decision, longest waiting first (of one user when given).

        Each entry's `thread_id` and `interrupt_id` go to `Orchestrator.resume`. An entry with
        `decided` true has its decisions recorded but not carried out (the deciding process
        stopped): `resume(thread_id)` with no decision carries them out.
        """
        with self._ledger() as ledger:
            return ledger.inbox(user_id)

    def grant(self, user_id: str, tool: str, rule: Rule, *, granted_by: str | None = None) -> None:
        """Remember for `user_id`: always `allow` `tool`, always `ask`, or `never` allow it.

        Later runs with `user_id=` follow it; a run's own `confirm_allow`/`confirm_deny`
        still take precedence.
        """
        if self.tools is not None and tool not in self.tools:
            raise ConfigurationError(f"unknown tool {tool!r}; known tools: {sorted(self.tools)!r}")
        with self._ledger() as ledger:
            ledger.grant(user_id, tool, rule, granted_by=granted_by)

    def revoke(self, user_id: str, tool: str) -> bool:
        """Forget `user_id`'s rule for `tool`; False when there was none."""
        with self._ledger() as ledger:
            return ledger.revoke(user_id, tool)

    def rules(self, user_id: str) -> dict[str, Rule]:
        """`user_id`'s remembered rules, tool → rule."""
        with self._ledger() as ledger:
            return ledger.rules(user_id)

    def rule_entries(self, user_id: str | None = None) -> list[RuleEntry]:
        """Every remembered rule with who granted it and when (of one user when given)."""
        with self._ledger() as ledger:
            return ledger.rule_entries(user_id)

    def tool_calls(self, thread_id: str | None = None) -> list[ToolCallEntry]:
        """The audit of tool calls, oldest first (of one thread when given)."""
        with self._ledger() as ledger:
            return ledger.tool_calls(thread_id)

    def model_calls(self, thread_id: str | None = None, run_id: str | None = None) -> list[ModelCallEntry]:
        """Every request to a model, oldest first (of one thread, and run, when given): tokens in
        and out, latency, how it ended (see `graphloop.nodes.usage`)."""
        with self._ledger() as ledger:
            return ledger.model_calls(thread_id, run_id)

    def usage(self, *, since: timedelta | None = None, by: UsageGroup | None = None,
              thread_id: str | None = None) -> list[UsageTotals]:
        """Model calls and tokens summed (one sum, or per user, model or thread with `by`,
        largest first), over the last `since` when given, of one thread when given.

        Example:
            >>> Approvals(":memory:").usage(since=timedelta(days=7), by="model")
            []
        """
        if by is not None and by not in get_args(UsageGroup):
            raise ConfigurationError(f"by={by!r} is not one of 'user', 'model', 'thread'")
        start = None if since is None else _start_of(since)
        with self._ledger() as ledger:
            return ledger.usage(thread_id=thread_id, since=start, by=by)

    def decisions(self, thread_id: str | None = None) -> list[DecisionEntry]:
        """Every decision, oldest first (of one thread when given)."""
        with self._ledger() as ledger:
            return ledger.decisions(thread_id)


def _start_of(since: object) -> str:
    """The time `since` ago, as the tables store times; `ConfigurationError` for anything but a
    duration from zero to the year 1."""
    if not isinstance(since, timedelta) or since < timedelta(0):
        raise ConfigurationError(f"since={since!r} is not a duration of zero or more (a timedelta)")
    try:
        return (datetime.now(UTC) - since).isoformat(timespec="milliseconds")
    except OverflowError:
        raise ConfigurationError(f"since={since!r} reaches back before the year 1") from None
