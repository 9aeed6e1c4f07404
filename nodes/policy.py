"""The run's permissions, pinned in its thread: which tools it may use, which wait for a person.

The first step of a run (`compact`) computes the `Gate` from the context it runs with and the
run's `Policy`, and writes it into the policy. From then on the thread's own gate applies,
whichever process or client continues it: a resume with a smaller `confirm_required` (a new
deploy, a typo) still asks about every tool the thread gated, and a process with other roles
does not widen or narrow the thread's tools. A resuming process may add gates (its own
`confirm_required` is added), never remove them; a tool the process lacks is not offered.

Example:
    >>> from graphloop.nodes.context import LoopContext
    >>> def send_email(to: str) -> str:
    ...     '''Send an email.'''
    ...     return "sent"
    >>> context = LoopContext.create(tools=[send_email], confirm_required=["send_email"])
    >>> policy = pinned(policy_of({"messages": []}), context)
    >>> policy["gate"]["gated"], gated_tools(policy, LoopContext.create(tools=[send_email]))
    (['send_email'], frozenset({'send_email'}))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from graphloop.checkpointers import ConfigurationError
from graphloop.nodes.context import LoopContext
from graphloop.nodes.limits import check_limits
from graphloop.nodes.state import DecisionType, Gate, Policy, policy_of

__all__ = [
    "allowed_tools",
    "check_keys",
    "check_policy",
    "decisions_for",
    "exempt_tools",
    "gated_tools",
    "never_tools",
    "pin_gate",
    "pinned",
    "policy_of",
    "tool_schemas",
]


def _role_tools(policy: Policy, context: LoopContext) -> tuple[str, ...]:
    """The role's set, narrowed by `tool_list`, from this context."""
    names = context.tools.names
    if context.roles is not None:
        role_set = context.roles.get(policy["user_role"], frozenset())
        names = tuple(n for n in names if n in role_set)
    if policy["tool_list"] is not None:
        wanted = set(policy["tool_list"])
        names = tuple(n for n in names if n in wanted)
    return names


def _context_gated(policy: Policy, context: LoopContext) -> frozenset[str]:
    """`confirm_required`, then the user's remembered rules, then the run's own lists.

    (required − exempt) ∪ (remembered ask − confirm_allow) ∪ confirm_deny, where exempt is
    `exempt_tools` (confirm_allow and remembered allows); without remembered rules this is the
    original loop's (required − allow) ∪ deny.
    """
    remembered = policy.get("remembered", {})
    asked = {t for t, r in remembered.items() if r == "ask"} - set(policy["confirm_allow"])
    return (context.confirm_required - exempt_tools(policy)) | asked | set(policy["confirm_deny"])


def pin_gate(policy: Policy, context: LoopContext) -> Gate:
    """The gate a run starting now with `policy` in `context` pins."""
    gated = sorted(_context_gated(policy, context))
    return Gate(tools=list(_role_tools(policy, context)), gated=gated,
                decisions={t: context.decisions_for(t) for t in gated})


def pinned(policy: Policy, context: LoopContext) -> Policy:
    """`policy` with its gate: the one it carries, else one pinned from `context` now (with
    the context's `one_call_per_pause` and `limits` where the policy does not say)."""
    if "gate" in policy:
        return policy
    pauses = policy.get("one_call_per_pause", context.one_call_per_pause)
    whole: Policy = {**policy, "one_call_per_pause": pauses, "gate": pin_gate(policy, context)}
    limits = policy.get("limits", context.limits)
    if limits:
        whole["limits"] = limits
    return whole


def check_keys(policy: Mapping[str, object]) -> None:
    """Refuse a policy with a key `Policy` does not have (a typo would be ignored in silence)."""
    unknown = sorted(set(policy) - Policy.__required_keys__ - Policy.__optional_keys__)
    if unknown:
        raise ConfigurationError(
            f"policy has unknown keys {unknown!r}; known keys: "
            f"{sorted(Policy.__required_keys__ | Policy.__optional_keys__)!r}")


def _check_types(policy: Policy) -> None:
    """A policy from a client or a dict may hold anything, whatever `Policy` says."""
    given: dict[str, object] = dict(policy)
    wrong = [f"{k}={given[k]!r} (true or false)" for k in ("respond_with_final", "ask_model_to_confirm")
             if not isinstance(given[k], bool)]
    if not isinstance(given["user_role"], str):
        wrong.append(f"user_role={given['user_role']!r} (a role's name)")
    rounds = given["max_rounds"]
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        wrong.append(f"max_rounds={rounds!r} (a whole number, 1 or more)")
    if "limits" in given:
        wrong += check_limits(given["limits"])
    for key in ("tool_list", "confirm_allow", "confirm_deny"):
        value = given[key]
        if (value is None and key == "tool_list") or _is_names(value):
            continue
        wrong.append(f"{key}={value!r} (a list of tool names{', or None' if key == 'tool_list' else ''})")
    if wrong:
        raise ConfigurationError(f"policy has values of the wrong type: {'; '.join(wrong)}")


def _is_names(value: object) -> bool:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | set | frozenset):
        return False
    return all(isinstance(name, str) for name in cast(list[object], value))


def allowed_tools(policy: Policy, context: LoopContext) -> tuple[str, ...]:
    """Tools this run may see and call: the thread's pinned set, of those this process has."""
    gate = policy.get("gate")
    if gate is None:
        return _role_tools(policy, context)
    wanted = set(gate["tools"])
    return tuple(n for n in context.tools.names if n in wanted)


def tool_schemas(policy: Policy, context: LoopContext) -> list[dict[str, Any]]:
    """The OpenAI schemas of the tools this run may use: every request of a run lists them."""
    return context.tools.schemas(allowed_tools(policy, context))


def gated_tools(policy: Policy, context: LoopContext) -> frozenset[str]:
    """Tools whose calls wait for a decision: the thread's pinned set plus this context's."""
    gate = policy.get("gate")
    return _context_gated(policy, context) | frozenset(gate["gated"] if gate else ())


def decisions_for(policy: Policy, context: LoopContext, tool: str) -> list[DecisionType]:
    """The decisions a person may make about a call to `tool` (the thread's, where pinned)."""
    gate = policy.get("gate")
    if gate is not None and tool in gate["decisions"]:
        return list(gate["decisions"][tool])
    return context.decisions_for(tool)


def exempt_tools(policy: Policy) -> frozenset[str]:
    """Tools this run exempts from any process's `confirm_required`: its `confirm_allow` and
    the user's remembered allows (a `confirm_deny` or remembered ask still gates them)."""
    remembered = policy.get("remembered", {})
    return frozenset(policy["confirm_allow"]) | {t for t, r in remembered.items() if r == "allow"}


def never_tools(policy: Policy) -> frozenset[str]:
    """Tools the user said never to allow, unless this run's allow/deny lists name them."""
    remembered = policy.get("remembered", {})
    named = set(policy["confirm_allow"]) | set(policy["confirm_deny"])
    return frozenset(t for t, r in remembered.items() if r == "never" and t not in named)


def check_policy(policy: Policy, context: LoopContext) -> None:
    """Raise `ConfigurationError` for a value of the wrong type in a new run's `policy`, or a
    role or tool name that `context` does not know."""
    _check_types(policy)
    if context.roles is not None and policy["user_role"] not in context.roles:
        raise ConfigurationError(
            f"user_role={policy['user_role']!r} is not a configured role; "
            f"known roles: {sorted(context.roles)!r}"
        )
    unknown = sorted(set(policy["tool_list"] or ()) - set(context.tools.names))
    if unknown:
        raise ConfigurationError(
            f"tool_list names unknown tools {unknown!r}; known tools: {list(context.tools.names)!r}")
