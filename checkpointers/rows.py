"""The rows of graphloop's tables, as Python sees them, and the two values every table uses:
the time (`now`) and a call's fingerprint (`call_hash`). The tables themselves are in
`graphloop.checkpointers.ledger`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal, NotRequired, TypedDict, get_args

__all__ = ["RULES", "CallStatus", "DecisionEntry", "InboxEntry", "ModelCallEntry", "Rule", "RuleEntry",
           "ToolCallEntry", "UsageTotals", "call_hash", "now"]

CallStatus = Literal["running", "success", "error", "timeout", "unknown", "refused", "rejected",
                     "responded", "abandoned", "late", "late_success", "late_error"]
"""`running`: claimed, no outcome yet (after a crash: `unknown`, never run again);
`responded`: a person answered in the tool's place; `abandoned`: never decided (new input
while paused, a dismissed pause), not run; `timeout`: stopped at its timeout (an async tool
cancelled, a sync call that never got a thread); `late`: a sync call still running past its
timeout, outcome unknown (the same call is not run again meanwhile), then `late_success` or
`late_error` when its outcome arrives."""
Rule = Literal["allow", "ask", "never"]
RULES: tuple[Rule, ...] = get_args(Rule)



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
    decided: NotRequired[bool]
    """When read back: its decisions are recorded but not carried out yet (normally for
    milliseconds; for good when the deciding process stopped: a plain resume carries them out)."""


class ModelCallEntry(TypedDict):
    """One request to a model (see `graphloop.nodes.usage`)."""

    thread_id: str
    run_id: str
    """The run it belongs to ("" when the graph was invoked without one)."""
    round: int
    model: str
    """The model's label (never its key)."""
    purpose: Literal["turn", "question", "final"]
    outcome: Literal["answered", "retried", "failed", "fallback"]
    input_tokens: int | None
    output_tokens: int | None
    counted: bool
    """The server reported no usage: graphloop counted the tokens."""
    latency_ms: float
    started_at: str
    user_id: str | None


class UsageTotals(TypedDict):
    """Model calls and tokens summed over some rows of `model_calls` (`Ledger.usage`)."""

    key: str | None
    """The user, model or thread the sum is for, when grouped; else None."""
    model_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    counted_calls: int
    """Calls whose tokens graphloop counted because the server reported none."""


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
    # surrogatepass: arguments may hold lone surrogates (a file name from os.listdir)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
