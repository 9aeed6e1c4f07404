"""Runtime context: what nodes need but a checkpoint must never hold.

`ModelConfig` keeps the original loop's `model_cfg` keys. `LoopContext` carries the model chain
(with API keys), the tools and the gate settings; pass it as `context=` on every invoke or
resume. Nothing here is ever written to state.

Example:
    >>> cfg = ModelConfig.coerce({"label": "local", "api_url": "http://127.0.0.1:11434/v1",
    ...                           "model_name": "qwen3", "api_key": "sk-secret"})
    >>> cfg
    ModelConfig(label='local', api_url='http://127.0.0.1:11434/v1', model_name='qwen3', host_type='openai', context_k=32, max_output_tokens=None, timeout=60.0, max_retries=2, retry_base_delay=0.5, retry_max_delay=8.0, stream=True, tool_choice='auto', extra_body={}, text_tool_calls=False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, cast, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

from graphloop.checkpointers.errors import ConfigurationError
from graphloop.checkpointers.ledger import Ledger
from graphloop.checkpointers.redact import redact
from graphloop.nodes.state import DECISION_TYPES, DEFAULT_DECISIONS, DecisionType
from graphloop.nodes.tokens import TokenCounter, counter_for
from graphloop.nodes.toolbox import ToolBox, ToolLike

__all__ = [
    "ALL_TOOLS",
    "CompactionSettings",
    "HostType",
    "LoopContext",
    "ModelConfig",
    "ModelLike",
    "RoleTools",
    "ToolChoice",
]

HostType = Literal["openai", "openwebui", "openrouter", "litellm", "ollama", "vllm", "llamacpp"]
ToolChoice = Literal["auto", "none", "required"]
"""Where the model is served. Only `openwebui` changes the URL: its API lives under `/api`."""

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
class ModelConfig:
    """One OpenAI-compatible model endpoint. The key is kept out of `repr` and out of state."""

    label: str
    api_url: str
    model_name: str
    api_key: str = field(default="", repr=False)
    host_type: HostType = "openai"
    context_k: int = 32
    """Context window in thousands of tokens."""
    max_output_tokens: int | None = None
    """Tokens reserved for the reply: subtracted from the budget, and sent as `max_tokens`."""
    timeout: float = 60.0
    """Seconds for one HTTP request."""
    max_retries: int = 2
    """Retries after a connection error, timeout, 408, 409, 429 or 5xx, before the next model."""
    retry_base_delay: float = 0.5
    """Seconds before the first retry; doubled each time, with jitter."""
    retry_max_delay: float = 8.0
    """Longest wait between retries (a longer `Retry-After` is cut to this)."""
    stream: bool = True
    """Stream replies when the caller shows tokens; False for a server that streams badly.
    (A server that streams nothing with tools is asked without streaming anyway.)"""
    tool_choice: ToolChoice | None = "auto"
    """Sent whenever tools are offered (llama-cpp-python ignores tools without it); None: not
    sent. The question and the final answer send "none"."""
    extra_headers: Mapping[str, str] = field(default_factory=dict[str, str], repr=False, hash=False)
    """Headers on every request (LiteLLM's and Open WebUI's per-request options; may hold
    secrets, so never shown)."""
    extra_body: Mapping[str, Any] = field(default_factory=dict[str, Any], hash=False)
    """Fields added to every request body (`{"top_k": 20}`, Open WebUI's `{"features": ...}`)."""
    text_tool_calls: bool = False
    """Read a reply that is only a JSON tool call written as text as that call (small local
    models); off by default: see `graphloop.nodes.text_calls`."""

    def __post_init__(self) -> None:
        if _carries_secret(self.api_url):  # checked first: no message below may show it
            raise ConfigurationError(
                f"model {self.label!r}: api_url carries a secret (a user or password before '@', "
                "or a key, token, code, signature or password parameter); give the key as api_key "
                "(api_key_env in graphloop.toml), never inside the URL")
        if not self.api_url or not self.model_name:
            raise ConfigurationError(
                f"model {self.label!r}: api_url and model_name are required "
                f"(got api_url={self.api_url!r}, model_name={self.model_name!r})"
            )
        if self.host_type not in get_args(HostType):
            raise ConfigurationError(
                f"model {self.label!r}: host_type={self.host_type!r} is not one of "
                f"{', '.join(get_args(HostType))}"
            )
        if self.context_k <= 0:
            raise ConfigurationError(f"model {self.label!r}: context_k must be > 0, got {self.context_k!r}")
        if self.tool_choice is not None and self.tool_choice not in get_args(ToolChoice):
            raise ConfigurationError(
                f"model {self.label!r}: tool_choice={self.tool_choice!r} is not one of "
                f"{list(get_args(ToolChoice))!r} or None")
        _check_settings(self)

    @property
    def base_url(self) -> str:
        """The OpenAI API root: `api_url`, plus `/api` for Open WebUI."""
        root = self.api_url.rstrip("/")
        return f"{root}/api" if self.host_type == "openwebui" else root

    def budget(self, trigger_fraction: float = 0.75) -> int:
        """Tokens a request may use: `trigger_fraction` of the window minus the reserved output.

        Example:
            >>> ModelConfig("m", "http://h/v1", "m", context_k=8, max_output_tokens=1000).budget()
            5000
        """
        return int(self.context_k * 1000 * trigger_fraction) - (self.max_output_tokens or 0)

    @classmethod
    def coerce(cls, value: ModelLike) -> ModelConfig:
        """Accept a `ModelConfig` or an original-style `model_cfg` dict (`tool_choice` None or
        "" there: not sent)."""
        if isinstance(value, ModelConfig):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigurationError(
                f"model_cfg has unknown keys {unknown!r}; known keys: {sorted(known)!r}"
            )
        data: dict[str, Any] = {k: v for k, v in value.items() if v is not None}
        if "tool_choice" in value and not value["tool_choice"]:
            data["tool_choice"] = None
        data.setdefault("label", data.get("model_name", ""))
        data["api_key"] = data.get("api_key") or ""
        return cls(**data)


ModelLike = ModelConfig | Mapping[str, Any]

_GRAPHLOOPS_OWN = frozenset({"model", "messages", "tools", "tool_choice", "stream", "stream_options"})
"""Request fields graphloop sets itself: `extra_body` may not override them."""


def _check_settings(model: ModelConfig) -> None:
    """Refuse per-model settings of the wrong type before any request is made (a dict or a
    TOML file may hold anything, whatever the annotations say)."""
    where = f"model {model.label!r}"
    given: dict[str, object] = {f.name: getattr(model, f.name) for f in fields(model)}
    for name in ("stream", "text_tool_calls"):
        if not isinstance(given[name], bool):
            raise ConfigurationError(f"{where}: {name}={given[name]!r} must be true or false")
    for name in ("max_output_tokens", "timeout"):
        value = given[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise ConfigurationError(f"{where}: {name}={value!r} must be a positive number")
    headers = cast(Mapping[object, object], given["extra_headers"])
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ConfigurationError(f"{where}: extra_headers must map header names to text values")
    _check_sendable(model)
    own = sorted(_GRAPHLOOPS_OWN & set(model.extra_body))
    if own:
        raise ConfigurationError(
            f"{where}: extra_body may not set {own!r}: graphloop sets them (use model_name, "
            "tool_choice and stream instead)")


_KEY_TEXT = re.compile(r"[!-~]*")
"""What a key may hold: visible ASCII, no space."""
_HEADER_TEXT = re.compile(r"(?:[!-~](?:[ \t!-~]*[!-~])?)?")
"""What a header value may hold: visible ASCII, spaces and tabs only between."""


def _check_sendable(model: ModelConfig) -> None:
    """Refuse a key or header value HTTP cannot carry (a key read from a file with its newline):
    sent, it fails as a "connection error" whose log line at DEBUG level shows the whole key."""
    bad = [f"header {name!r}" for name, value in model.extra_headers.items() if not _HEADER_TEXT.fullmatch(value)]
    key = cast(object, model.api_key)  # a dict or a TOML file may hold anything
    if not isinstance(key, str) or not _KEY_TEXT.fullmatch(key):
        bad.insert(0, "api_key")
    if bad:
        raise ConfigurationError(
            f"model {model.label!r}: {' and '.join(bad)} cannot be sent in an HTTP header (a space, "
            "a line break or a character outside ASCII: a key read from a file with its newline?); "
            "strip it")


_SECRET_NAME = re.compile(r"key|token|secret|pass|auth|sig|code|credential", re.IGNORECASE)


def _carries_secret(url: str) -> bool:
    """Whether `url` holds what looks like a credential: userinfo, or a secret-named parameter."""
    parts = urlsplit(url if "://" in url or url.startswith("//") else f"//{url}")
    names = [name for part in (parts.query, parts.fragment) for name, _ in parse_qsl(part, keep_blank_values=True)]
    return "@" in parts.netloc or any(_SECRET_NAME.search(unquote(n)) for n in names) or redact(url) != url


def _chain(models: ModelLike | Iterable[ModelLike]) -> tuple[ModelConfig, ...]:
    if isinstance(models, ModelConfig) or isinstance(models, Mapping):
        return (ModelConfig.coerce(cast(ModelLike, models)),)
    return tuple(ModelConfig.coerce(m) for m in models)


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
    ledger: Ledger | None = None
    """Where tool calls are claimed (at most once) and audited, decisions recorded and paused
    threads listed. Without one, none of that is recorded."""

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
    ) -> LoopContext:
        """Check and normalise the settings; every mistake is a `ConfigurationError`.

        Example:
            >>> ctx = LoopContext.create(models={"api_url": "http://127.0.0.1:1/v1",
            ...                                  "model_name": "m"}, roles={"admin": "*"})
            >>> ctx.models[0].label
            'm'
        """
        box = tools if isinstance(tools, ToolBox) else ToolBox(tools)
        chain = _chain(models)
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
                   ledger=ledger)

    def with_models(self, models: ModelLike | Iterable[ModelLike]) -> LoopContext:
        """This context with another model chain (primary first)."""
        chain = _chain(models)
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
