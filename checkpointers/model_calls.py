"""The ledger's `model_calls` table: one row per request to a model, and its sums.

Written by `graphloop.nodes.usage`; read by `Ledger.model_calls` and `Ledger.usage`, and so by
`Approvals`, the Orchestrator's `result.usage` and `graphloop usage`. Each row holds the
thread, the run, the round, the model's label, what the request was for, how it ended, its
tokens in and out (reported, or `counted`), its latency and the user: never a key, never text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, cast

from graphloop.checkpointers.rows import ModelCallEntry, UsageTotals

if TYPE_CHECKING:
    from graphloop.checkpointers.ledger import Cursor

__all__ = ["COLUMNS", "GROUPS", "UsageGroup", "after", "insert", "rows", "totals"]

COLUMNS = ("thread_id", "run_id", "round", "model", "purpose", "outcome", "input_tokens", "output_tokens",
           "counted", "latency_ms", "started_at", "user_id")

UsageGroup = Literal["user", "model", "thread"]
GROUPS: dict[UsageGroup, str] = {"user": "user_id", "model": "model", "thread": "thread_id"}


def insert(tx: Cursor, entries: Sequence[ModelCallEntry]) -> None:
    for entry in entries:
        values = [int(entry["counted"]) if c == "counted" else entry[c] for c in COLUMNS]  # pyright: ignore[reportUnknownVariableType]  # TypedDict read by name
        tx.run(f"INSERT INTO model_calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
               values)


def _filters(thread_id: str | None, run_id: str | None, since: str | None) -> tuple[str, list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    for clause, value in (("thread_id = ?", thread_id), ("run_id = ?", run_id), ("started_at >= ?", since)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def rows(tx: Cursor, order_key: str, thread_id: str | None, run_id: str | None) -> list[ModelCallEntry]:
    where, args = _filters(thread_id, run_id, None)
    found = tx.rows(f"SELECT {', '.join(COLUMNS)} FROM model_calls{where} ORDER BY started_at, {order_key}", args)
    return [cast(ModelCallEntry, {**r, "counted": bool(r["counted"])}) for r in found]


def totals(tx: Cursor, *, thread_id: str | None, run_id: str | None, since: str | None,
           by: UsageGroup | None) -> list[UsageTotals]:
    where, args = _filters(thread_id, run_id, since)
    key, grouped = (GROUPS[by], f" GROUP BY {GROUPS[by]}") if by is not None else ("NULL", "")
    tokens = "coalesce(sum(input_tokens), 0) + coalesce(sum(output_tokens), 0)"
    found = tx.rows(
        f"SELECT {key} AS key, count(*) AS model_calls, coalesce(sum(input_tokens), 0) AS input_tokens, "
        f"coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(counted), 0) AS counted_calls "
        f"FROM model_calls{where}{grouped} ORDER BY {tokens} DESC{', key' if by else ''}", args)
    return [UsageTotals(key=None if r["key"] is None else str(r["key"]), model_calls=int(r["model_calls"]),
                        input_tokens=int(r["input_tokens"]), output_tokens=int(r["output_tokens"]),
                        total_tokens=int(r["input_tokens"]) + int(r["output_tokens"]),
                        counted_calls=int(r["counted_calls"])) for r in found if r["model_calls"]]


def after(tx: Cursor, order_key: str, thread_id: str, skip: int) -> tuple[int, int, int]:
    """The rows of `thread_id` after its first `skip` (in the order written): how many, and
    their tokens in and out."""
    found = tx.rows(
        "SELECT count(*) AS calls, coalesce(sum(input_tokens), 0) AS tokens_in, "
        "coalesce(sum(output_tokens), 0) AS tokens_out FROM (SELECT input_tokens, output_tokens "
        f"FROM model_calls WHERE thread_id = ? ORDER BY {order_key} LIMIT 9223372036854775807 OFFSET ?) AS later",
        (thread_id, skip))
    return int(found[0]["calls"]), int(found[0]["tokens_in"]), int(found[0]["tokens_out"])
