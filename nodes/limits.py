"""What a run may spend: at most N model calls, N tokens in, out or in all (`UsageLimits`).

A limit is checked before each request, with the request counted exactly (the compact step's
count of what is sent). A round's request is sent only if it leaves room for a final answer
after it (one more model call, and as many tokens again as this request plus the note asking
for the answer) when the run answers at its limit (`respond_with_final`). Otherwise the run
ends the way the round limit ends it: a final answer without tools if that request fits, else
the summary of what the tools returned (the final request grows by what the round's tools
returned, so it may not fit after all); `stopped_by` in the state (and the Orchestrator's
result) names the limit. An output limit cannot be known before a reply: no request is sent
once the replies so far have reached it. The confirmation question is asked only if it fits
(else the default question is shown).

The limits travel in the run's policy, so a resume in another process, a served graph and the
CLI keep them; what was spent is kept in the state (`spent`) only for a run that has limits.

Example:
    >>> spent = {"model_calls": 2, "input_tokens": 600, "output_tokens": 90}
    >>> limit_reached({"total_tokens": 1000}, spent, 300), limit_reached({"total_tokens": 1000}, spent, 300, then=320)
    (None, 'total_tokens')
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from graphloop.checkpointers import ConfigurationError, Ledger
from graphloop.nodes.state import LoopState, LoopUpdate, Spent, StopReason, UsageLimits, policy_of

if TYPE_CHECKING:  # usage imports the context, which checks limits here
    from graphloop.nodes.usage import Budget, ModelCall

__all__ = ["NOTHING_SPENT", "LimitReached", "budget", "check_limits", "checked_limits", "limit_reached",
           "caught_up", "spent_after", "spent_update", "stop_text",
           "task_start"]

logger = logging.getLogger(__name__)

NOTHING_SPENT = Spent(model_calls=0, input_tokens=0, output_tokens=0)
_LARGEST = 2**53
"""The largest limit: a checkpoint stores whole numbers in 64 bits (and JSON clients in 53)."""

_NAMES: dict[StopReason, str] = {"model_calls": "model calls", "input_tokens": "input tokens",
                                 "output_tokens": "output tokens", "total_tokens": "tokens"}


def check_limits(limits: object) -> list[str]:
    """What is wrong with `limits` (a policy's), as `_check_types` words it; [] when nothing."""
    if not isinstance(limits, Mapping):
        return [f"limits={limits!r} (a mapping of {sorted(UsageLimits.__optional_keys__)} to whole numbers)"]
    wrong: list[str] = []
    for key, value in limits.items():  # pyright: ignore[reportUnknownVariableType]  # checked here
        if key not in UsageLimits.__optional_keys__:
            wrong.append(f"limits[{key!r}] (known limits: {sorted(UsageLimits.__optional_keys__)})")
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _LARGEST:
            wrong.append(f"limits[{key!r}]={value!r} (a whole number from 1 to {_LARGEST:,})")
    return wrong


def checked_limits(limits: UsageLimits | None) -> UsageLimits | None:
    """`limits` as given to the Orchestrator, a run or a context: `ConfigurationError` unless
    each is a known limit and a whole number, 1 or more."""
    wrong = check_limits(limits) if limits is not None else []
    if wrong:
        raise ConfigurationError(f"limits have wrong values: {'; '.join(wrong)}")
    return limits


def limit_reached(limits: UsageLimits, spent: Spent, request_tokens: int, then: int | None = None) -> StopReason | None:
    """The limit a request of `request_tokens` would pass, after `spent`, keeping room for a
    final request of `then` tokens after it when given; None when it fits."""
    calls = spent["model_calls"] + 1 + (then is not None)
    tokens_in = spent["input_tokens"] + request_tokens + (then or 0)
    checks: list[tuple[StopReason, int, int]] = [  # (limit, what it would be, its largest allowed)
        ("model_calls", calls, limits.get("model_calls", calls)),
        ("input_tokens", tokens_in, limits.get("input_tokens", tokens_in)),
        ("total_tokens", tokens_in + spent["output_tokens"], limits.get("total_tokens", tokens_in + spent["output_tokens"])),
        ("output_tokens", spent["output_tokens"] + 1, limits.get("output_tokens", spent["output_tokens"] + 1)),
    ]
    return next((reason for reason, would_be, allowed in checks if would_be > allowed), None)


class LimitReached(Exception):  # noqa: N818  # a signal, caught by the node, not an error
    """A request would pass the run's `reason` limit: it was not sent."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason)
        self.reason: StopReason = reason


def budget(state: LoopState, final_note: int | None = None) -> Budget | None:
    """The check each request of a node makes before it is sent (`graphloop.nodes.usage`),
    after what the run spent and the node's calls so far; None for a run without limits.
    With `final_note` (the tokens of the note asking for a final answer), a request must also
    leave room for a final request as large as itself plus the note."""
    limits = policy_of(state).get("limits")
    if not limits:
        return None
    before = state.get("spent") or NOTHING_SPENT

    def check(request_tokens: int, calls: Sequence[ModelCall]) -> StopReason | None:
        spent = spent_after(before, calls)
        then = None if final_note is None else request_tokens + final_note
        reason = limit_reached(limits, spent, request_tokens, then)
        if reason is not None:
            logger.warning("a request of %d tokens would pass the run's %s limit (%s spent); not sent",
                           request_tokens, reason, dict(spent))
        return reason
    return check


def spent_update(state: LoopState, calls: Sequence[ModelCall]) -> LoopUpdate:
    """The state update adding `calls` to what the run spent: only for a run with limits."""
    if not policy_of(state).get("limits") or not calls:
        return {}
    return {"spent": spent_after(state.get("spent") or NOTHING_SPENT, calls)}


def spent_after(spent: Spent, calls: Sequence[ModelCall]) -> Spent:
    """`spent` with `calls` added (a failed call counts as a call, with no tokens); each is a
    row of the ledger's too."""
    after = Spent(model_calls=spent["model_calls"] + len(calls),
                  input_tokens=spent["input_tokens"] + sum(c.input_tokens or 0 for c in calls),
                  output_tokens=spent["output_tokens"] + sum(c.output_tokens or 0 for c in calls))
    if "rows" in spent:
        after["rows"] = spent["rows"] + len(calls)
    return after


def caught_up(state: LoopState, ledger: Ledger | None, thread_id: str) -> LoopState:
    """`state` with what its task spent in requests its state does not count yet: those of a
    round whose every model failed (the node raised, so it could not update the state; the
    ledger has their rows). Blocking: call it off the event loop."""
    spent = state.get("spent")  # set with its rows when the task started (`task_start`, in `compact`)
    if ledger is None or not policy_of(state).get("limits") or spent is None or "rows" not in spent:
        return state
    calls, tokens_in, tokens_out = ledger.model_calls_after(thread_id, spent["rows"])
    if not calls:
        return state
    logger.info("adding %d model calls of an earlier failed round to what the task spent", calls)
    return {**state, "spent": Spent(model_calls=spent["model_calls"] + calls, input_tokens=spent["input_tokens"] + tokens_in,
                                    output_tokens=spent["output_tokens"] + tokens_out, rows=spent["rows"] + calls)}


def task_start(ledger: Ledger | None, thread_id: str) -> Spent:
    """What a new task has spent: nothing, after the rows the thread has in the ledger now.
    Blocking: call it off the event loop."""
    if ledger is None:
        return NOTHING_SPENT
    return {**NOTHING_SPENT, "rows": ledger.model_calls_after(thread_id, 0)[0]}


def stop_text(reason: StopReason, limits: UsageLimits, max_rounds: int) -> str:
    """How the summary at a limit names it: `the tool iteration limit (10 rounds)`."""
    if reason == "rounds":
        return f"the tool iteration limit ({max_rounds} rounds)"
    return f"the run's limit of {limits.get(reason, 0):,} {_NAMES[reason]}"
