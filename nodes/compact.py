"""The `compact` node, the first step of every round and every run.

Before compaction (see `graphloop.nodes.compaction`) it settles what the run starts from: a
turn left paused by new input is answered (`graphloop.nodes.abandon`), the run's gate is
pinned in its policy (`graphloop.nodes.policy`), and a dismissal of the previous run is cleared.
New input (a user's message last) starts a new task: its round count, what it spent and the
limit it stopped at start over, however the message came (the Orchestrator, a compiled graph,
the served graph).
"""

from __future__ import annotations

from typing import cast

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from graphloop.nodes.abandon import settle_history
from graphloop.nodes.audit import current_thread, ledger_of
from graphloop.nodes.compaction import plan_compaction
from graphloop.nodes.context import LoopContext
from graphloop.nodes.limits import task_start
from graphloop.nodes.policy import check_keys, check_policy, pinned
from graphloop.nodes.state import LoopState, LoopUpdate, Policy, apply_messages, policy_of

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
    update |= _new_task(state, update.get("policy", policy), runtime.context)
    planned = cast(LoopState, {**state, **update})
    if "messages" in update:  # plan on the history as it will be
        planned["messages"] = apply_messages(state["messages"], update["messages"])
    return {**update, **plan_compaction(planned, runtime.context)}


def _new_task(state: LoopState, policy: Policy, context: LoopContext) -> LoopUpdate:
    """The counters a new task starts from, when the newest message is the user's and the
    thread's counters are not at their start already (so an ordinary round writes nothing).
    A task with limits starts counting before its first request, so a first round that fails
    whole still counts (`graphloop.nodes.limits.caught_up`)."""
    messages = state["messages"]
    if not messages or not isinstance(messages[-1], HumanMessage):
        return {}
    update: LoopUpdate = {}
    if state.get("rounds"):
        update["rounds"] = 0
    if state.get("stopped_by") is not None:
        update["stopped_by"] = None
    if "spent" in state or policy.get("limits"):  # after the thread's rows now (compact runs off the event loop)
        update["spent"] = task_start(ledger_of(context), current_thread())
    return update
