"""Model endpoints: the original loop's `model_cfg`, checked before any request is made.

`ModelConfig` keeps the original loop's keys (`label, api_url, api_key, model_name, host_type,
context_k`) plus the settings servers really differ on. The key is kept out of `repr`, and an
`api_url` that carries a secret is refused.

Example:
    >>> cfg = ModelConfig.coerce({"label": "local", "api_url": "http://127.0.0.1:11434/v1",
    ...                           "model_name": "qwen3", "api_key": "sk-secret"})
    >>> cfg
    ModelConfig(label='local', api_url='http://127.0.0.1:11434/v1', model_name='qwen3', host_type='openai', context_k=32, max_output_tokens=None, timeout=60.0, max_retries=2, retry_base_delay=0.5, retry_max_delay=8.0, stream=True, tool_choice='auto', extra_body={}, text_tool_calls=False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

from graphloop.checkpointers import ConfigurationError, redact

__all__ = ["HostType", "ModelConfig", "ModelLike", "ToolChoice", "model_chain"]

HostType = Literal["openai", "openwebui", "openrouter", "litellm", "ollama", "vllm", "llamacpp"]
"""Where the model is served. `openwebui` changes the URL (its API lives under `/api`);
`llamacpp` sends the system text at the head of the first user message, as its
`chatml-function-calling` format needs to call tools (`graphloop.nodes.wire`)."""
ToolChoice = Literal["auto", "none", "required"]
"""The `tool_choice` sent while tools are offered."""

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
        if _carries_secret(self.api_url) or _holds_key(self.api_url, (self.api_key, *self.extra_headers.values())):
            raise ConfigurationError(
                f"model {self.label!r}: api_url carries a secret (a user or password before '@', "
                "a key, token, code, signature or password parameter, or the api_key itself); give the key as api_key "
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
        for required in ("api_url", "model_name"):  # missing: named by the check in __post_init__
            data.setdefault(required, "")
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


def _holds_key(url: str, secrets: Iterable[object]) -> bool:
    """Whether one of `secrets` (six characters or more) is a whole part of `url`: a key put in
    its path (`https://gateway/<key>/v1`) as well as given as `api_key`."""
    parts = set(re.split(r"[/?&=#:@]", unquote(url)))
    return any(isinstance(s, str) and len(s) >= 6 and s in parts for s in secrets)


def model_chain(models: ModelLike | Iterable[ModelLike]) -> tuple[ModelConfig, ...]:
    """A chain of checked models, primary first, from one model or several."""
    if isinstance(models, ModelConfig) or isinstance(models, Mapping):
        return (ModelConfig.coerce(cast(ModelLike, models)),)
    return tuple(ModelConfig.coerce(m) for m in models)
