"""Runtime context: what nodes need but a checkpoint must never hold.

`LoopContext` carries the model chain (with API keys), the tools and the gate settings; pass it
as `context=` on every invoke or resume. Nothing here is ever written to state.

Example:
    >>> ctx = LoopContext.create(models={"api_url": "http://127.0.0.1:1/v1", "model_name": "m"},
    ...                          tools=[len], roles={"admin": "*"})
    >>> ctx.primary.label, sorted(ctx.roles or {})
    ('m', ['admin'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, cast

from graphloop.checkpointers import ConfigurationError, Ledger
from graphloop.nodes.limits import checked_limits
from graphloop.nodes.models import ModelConfig, ModelLike, model_chain
from graphloop.nodes.state import DECISION_TYPES, DEFAULT_DECISIONS, DecisionType, UsageLimits
from graphloop.nodes.tally import TallyCache
from graphloop.nodes.tokens import TokenCounter, counter_for
from graphloop.nodes.toolbox import ToolBox, ToolLike

__all__ = ["ALL_TOOLS", "CompactionSettings", "LoopContext", "RoleTools"]

ALL_TOOLS: Literal["*"] = "*"
RoleTools = Literal["*"] | Sequence[str]
"""A role's tools: a list of names, or `"*"` for every tool."""



@dataclass(frozen=True)
class CompactionSettings:
    """How the request is made to fit (names follow LangChain's `ClearToolUsesEdit`).

    Example:
        >>> CompactionSettings(keep=4, exclude_tools=frozenset({"read_plan"})).keep
        4
    """

    trigger_fraction: float = 0.75
    """Share of each model's window a request may use (before the reserved output)."""
    keep: int = 6
    """The newest tool results are never cleared."""
    exclude_tools: frozenset[str] = frozenset()
    """Results of these tools are never cleared (they may still go with a dropped round)."""
    keep_chars: int = 400
    """Characters of a cleared tool result still shown."""
    placeholder: str = "…[{omitted} chars omitted]"
    """Shown after the kept characters; `{omitted}` is the number of characters left out."""

    def __post_init__(self) -> None:
        if not 0 < self.trigger_fraction <= 1:
            raise ConfigurationError(
                f"trigger_fraction={self.trigger_fraction!r} must be in (0, 1]")
        if self.keep < 0 or self.keep_chars < 0:
            raise ConfigurationError(
                f"keep={self.keep!r} and keep_chars={self.keep_chars!r} must not be negative")


@dataclass(frozen=True)
class LoopContext:
    """Everything the nodes use that is not checkpointed. Build it with `LoopContext.create`.

    The same context (or one with the same tools and settings) must be passed again on
    resume: keys are never stored, so the thread cannot supply them.
    """

    models: tuple[ModelConfig, ...]
    """The model chain, primary first."""
    tools: ToolBox
    confirm_required: frozenset[str] = frozenset()
    roles: Mapping[str, frozenset[str]] | None = None
    """Tool names per role; None lets every role use every tool."""
    compaction: CompactionSettings = CompactionSettings()
    tool_timeout: float = 60.0
    """Seconds a tool may run before its call is abandoned with an error message."""
    tool_timeouts: Mapping[str, float] = field(default_factory=dict[str, float])
    """Per-tool timeouts, overriding `tool_timeout`."""
    repeat_limit: int = 3
    """The same call (tool and arguments) this many turns in a row is refused as a loop; 0: never."""
    allowed_decisions: Mapping[str, tuple[DecisionType, ...]] = field(
        default_factory=dict[str, tuple[DecisionType, ...]])
    """Per gated tool, the decisions a person may make (default: approve, edit, reject; add
    `respond` to let the person answer in the tool's place)."""
    one_call_per_pause: bool = False
    """Pause once per gated call, for runs whose policy does not say (the served graph's)."""
    limits: UsageLimits | None = None
    """What a run may spend on model calls, for runs whose policy does not say (the served
    graph's; see `graphloop.nodes.limits`)."""
    ledger: Ledger | None = None
    """Where tool calls are claimed (at most once) and audited, decisions recorded and paused
    threads listed. Without one, none of that is recorded."""
    tallies: TallyCache = field(default_factory=TallyCache, compare=False, repr=False)
    """Running token totals of recent threads (`graphloop.nodes.tally`), shared by every run
    with this context and the copies made of it, so a round counts only its new messages."""

    @classmethod
    def create(
        cls,
        *,
        models: ModelLike | Iterable[ModelLike] = (),
        tools: Iterable[ToolLike] | ToolBox = (),
        confirm_required: Iterable[str] = (),
        roles: Mapping[str, RoleTools] | None = None,
        compaction: CompactionSettings | None = None,
        tool_timeout: float = 60.0,
        tool_timeouts: Mapping[str, float] | None = None,
        repeat_limit: int = 3,
        allowed_decisions: Mapping[str, Iterable[DecisionType]] | None = None,
        ledger: Ledger | None = None,
        one_call_per_pause: bool = False,
        limits: UsageLimits | None = None,
    ) -> LoopContext:
        """Check and normalise the settings; every mistake is a `ConfigurationError`.

        Example:
            >>> ctx = LoopContext.create(models={"api_url": "http://127.0.0.1:1/v1",
            ...                                  "model_name": "m"}, roles={"admin": "*"})
            >>> ctx.models[0].label
            'm'
        """
        if not isinstance(cast(object, one_call_per_pause), bool):  # typed bool, but "false" is true
            raise ConfigurationError(f"one_call_per_pause={one_call_per_pause!r} must be True or False")
        box = tools if isinstance(tools, ToolBox) else ToolBox(tools)
        chain = model_chain(models)
        gated = frozenset(confirm_required)
        _check_names(box, gated, "confirm_required")
        role_sets: dict[str, frozenset[str]] | None = None
        if roles is not None:
            role_sets = {}
            for role, names in roles.items():
                if names == ALL_TOOLS:
                    role_sets[role] = frozenset(box.names)
                elif isinstance(names, str):
                    raise ConfigurationError(
                        f"roles[{role!r}]={names!r}: give a list of tool names or '*'"
                    )
                else:
                    _check_names(box, names, f"roles[{role!r}]")
                    role_sets[role] = frozenset(names)
        settings = compaction or CompactionSettings()
        _check_budgets(chain, settings)
        timeouts = dict(tool_timeouts or {})
        _check_names(box, timeouts, "tool_timeouts")
        if tool_timeout <= 0 or any(t <= 0 for t in timeouts.values()):
            raise ConfigurationError(
                f"tool timeouts must be positive seconds, got {tool_timeout!r} and {timeouts!r}")
        return cls(models=chain, tools=box, confirm_required=gated, roles=role_sets,
                   compaction=settings, tool_timeout=tool_timeout, tool_timeouts=timeouts,
                   repeat_limit=repeat_limit, allowed_decisions=_decision_sets(box, allowed_decisions),
                   ledger=ledger, one_call_per_pause=one_call_per_pause, limits=checked_limits(limits) or None)

    def with_models(self, models: ModelLike | Iterable[ModelLike]) -> LoopContext:
        """This context with another model chain (primary first)."""
        chain = model_chain(models)
        _check_budgets(chain, self.compaction)
        return replace(self, models=chain)

    @property
    def primary(self) -> ModelConfig:
        """The first model of the chain; `ConfigurationError` when there is none."""
        if not self.models:
            raise ConfigurationError(
                "no model configured: give models=[...] (a model_cfg dict or ModelConfig) "
                "to LoopContext.create, the Orchestrator, or run(model_cfg=...)"
            )
        return self.models[0]

    def decisions_for(self, tool: str) -> list[DecisionType]:
        """The decisions a person may make about a call to `tool`."""
        return list(self.allowed_decisions.get(tool, DEFAULT_DECISIONS))

    def timeout_for(self, tool: str) -> float:
        """Seconds `tool` may run."""
        return self.tool_timeouts.get(tool, self.tool_timeout)

    @property
    def budget_tokens(self) -> int:
        """The smallest budget in the chain, so the view fits whichever model answers."""
        fraction = self.compaction.trigger_fraction
        return min((m.budget(fraction) for m in self.models), default=self.primary.budget(fraction))

    @property
    def counter(self) -> TokenCounter:
        """Token counter for the primary model's encoding (offline)."""
        return counter_for(self.primary.model_name)


def _check_budgets(chain: Iterable[ModelConfig], settings: CompactionSettings) -> None:
    for model in chain:
        if model.budget(settings.trigger_fraction) <= 0:
            raise ConfigurationError(
                f"model {model.label!r}: context_k={model.context_k!r} with "
                f"trigger_fraction={settings.trigger_fraction!r} leaves no room after "
                f"max_output_tokens={model.max_output_tokens!r}; raise context_k or lower "
                "max_output_tokens"
            )


def _decision_sets(
    box: ToolBox, given: Mapping[str, Iterable[DecisionType]] | None
) -> dict[str, tuple[DecisionType, ...]]:
    sets = {tool: tuple(kinds) for tool, kinds in (given or {}).items()}
    _check_names(box, sets, "allowed_decisions")
    for tool, kinds in sets.items():
        if not kinds or any(k not in DECISION_TYPES for k in kinds):
            raise ConfigurationError(
                f"allowed_decisions[{tool!r}]={list(kinds)!r}: give a non-empty list drawn from "
                f"{list(DECISION_TYPES)!r}")
    return sets


def _check_names(box: ToolBox, names: Iterable[str], where: str) -> None:
    unknown = sorted(set(names) - set(box.names))
    if unknown:
        raise ConfigurationError(
            f"{where} names unknown tools {unknown!r}; known tools: {list(box.names)!r}"
        )
