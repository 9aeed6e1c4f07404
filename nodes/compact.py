"""The `compact` node, the first step of every round and every run.

Before compaction (see `graphloop.nodes.compaction`) it settles what the run starts from: a
turn left paused by new input is answered (`graphloop.nodes.abandon`), the run's gate is
pinned in its policy (`graphloop.nodes.policy`), and a dismissal of the previous run is cleared.
"""

from __future__ import annotations

from typing import cast

from langgraph.runtime import Runtime

from graphloop.nodes.abandon import settle_history
from graphloop.nodes.audit import ledger_of
from graphloop.nodes.compaction import plan_compaction
from graphloop.nodes.context import LoopContext
from graphloop.nodes.policy import check_keys, check_policy, pinned
from graphloop.nodes.state import LoopState, LoopUpdate, apply_messages, policy_of

__all__ = ["compact"]


def compact(state: LoopState, runtime: Runtime[LoopContext]) -> LoopUpdate:
    """Settle a paused turn, pin the gate, then decide what the model will see."""
    update = settle_history(state, ledger_of(runtime.context))
    policy = policy_of(state)
    check_keys(policy)  # where a policy enters the graph, so nothing after checks it again
    if "gate" not in policy:  # a run's new policy: checked, and its gate pinned
        check_policy(policy, runtime.context)
        update["policy"] = pinned(policy, runtime.context)
    elif policy is not state.get("policy"):  # a partial policy that brought its gate: stored whole
        update["policy"] = policy
    if state.get("dismissed"):
        update["dismissed"] = False
    planned = cast(LoopState, {**state, **update})
    if "messages" in update:  # plan on the history as it will be
        planned["messages"] = apply_messages(state["messages"], update["messages"])
    return {**update, **plan_compaction(planned, runtime.context)}
