"""Make every request fit its token budget, deciding once and remembering.

Steps, applied in order and stopping as soon as the request fits:

a. clear tool results older than the newest `keep`, oldest first, to their first `keep_chars`
   characters plus the placeholder (`exclude_tools` are never cleared);
b. drop the oldest whole rounds (an assistant message goes with all its tool results), always
   keeping the system prompt, the current task and the latest round;
c. shorten the latest round's tool results, largest first;
d. if the system prompt, the task and the tool schemas alone (or with the latest round at its
   shortest) exceed the budget, raise `ContextBudgetError` before anything is sent.

Decisions go to the thread's decision log and are never undone, so the prompt prefix only
changes where something new is compacted. A `TokenTally` (`graphloop.nodes.tally`) keeps running token totals
per thread in memory, so a round counts only the messages that are new.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from langchain_core.messages import AnyMessage, BaseMessage

from graphloop.nodes.audit import current_thread
from graphloop.nodes.context import LoopContext
from graphloop.nodes.policy import tool_schemas
from graphloop.nodes.state import LoopState, LoopUpdate, policy_of
from graphloop.nodes.tally import TokenTally
from graphloop.nodes.view import render_view

__all__ = ["compacted_view", "fitted_view", "plan_compaction"]

logger = logging.getLogger(__name__)


def _tally(state: LoopState, context: LoopContext) -> TokenTally:
    """The thread's tally from the context's cache, brought up to date (or rebuilt)."""
    messages = state["messages"]
    events = state.get("compacted", [])
    counter = context.counter
    key = (current_thread(), messages[0].id or "" if messages else "", counter.encoding.name,
           context.compaction)
    tally = context.tallies.get(key)
    if tally is None or not tally.matches(messages, len(events)):
        tally = TokenTally(counter, context.compaction)
        tally.ingest(messages)
        for event in events:
            tally.apply(event)
    else:
        tally.ingest(messages)
    context.tallies.put(key, tally)
    return tally


def plan_compaction(state: LoopState, context: LoopContext, budget: int | None = None) -> LoopUpdate:
    """The state update that makes the next request fit `budget` (default: the chain's)."""
    return _plan(state, context, budget)[0]


def compacted_view(state: LoopState, context: LoopContext) -> list[AnyMessage]:
    """What the model sees of `state`: its messages under the decisions already made."""
    return render_view(state["messages"], _tally(state, context).shown, context.compaction)


def _plan(state: LoopState, context: LoopContext, budget: int | None) -> tuple[LoopUpdate, TokenTally]:
    tally = _tally(state, context)
    schemas = tool_schemas(policy_of(state), context)
    events, record = tally.plan(budget or context.budget_tokens, context.counter.schemas(schemas))
    if events:
        logger.info(
            "context compaction: %d cleared, %d dropped, %d shortened; %d → %d / %d tokens",
            len(record["cleared"]), len(record["dropped"]), len(record["shortened"]),
            record["tokens_before"], record["tokens_after"], record["budget"],
        )
    update = LoopUpdate(compaction=record)
    if events:
        update["compacted"] = events
    return update, tally


def fitted_view(
    state: LoopState,
    context: LoopContext,
    extra: Sequence[BaseMessage] = (),
    budget: int | None = None,
) -> tuple[LoopUpdate, list[BaseMessage]]:
    """Compact so that the view plus `extra` fits; return the state update and what to send.

    For requests beyond the round's main one: the confirmation question (with placeholders for
    the pending calls), the final answer at the round limit, a retry after an overflow.
    """
    room = (budget or context.budget_tokens) - sum(map(context.counter.message, extra))
    update, tally = _plan(state, context, room)
    return update, [*render_view(state["messages"], tally.shown, context.compaction), *extra]
