"""Where the CLI finds its models and tools: `graphloop.toml`, then the OpenAI environment.

`graphloop.toml` (in the working directory, or given with `--config`)::

    db = "graphloop.db"                    # or a postgresql:// URL (a password: better in PGPASSWORD)
    tools = ["myapp.tools:TOOLS"]          # module:attribute, a tool or a list of tools
    confirm_required = ["send_email"]

    one_call_per_pause = true              # optional: pause once per gated call (Agent Inbox)

    [limits]                               # optional, per run: model_calls, input_tokens,
    total_tokens = 200000                  # output_tokens, total_tokens (graphloop.nodes.limits)

    [allowed_decisions]                    # optional, per gated tool (default: approve, edit, reject)
    send_email = ["approve", "reject", "respond"]

    [[models]]                             # the chain, primary first
    label = "local"
    api_url = "http://127.0.0.1:11434/v1"
    model_name = "qwen3"
    context_k = 32
    api_key_env = "OLLAMA_API_KEY"         # the key's environment variable; keys never go in the file
    # optional, per model (defaults work on OpenAI, OpenRouter, LiteLLM, Open WebUI, Ollama, vLLM,
    # llama.cpp): stream = false, tool_choice = "" (not sent), max_output_tokens = 1024,
    # text_tool_calls = true, extra_body = {top_k = 20}, extra_headers = {"X-Title" = "app"}
    # (a header's secret from the environment: extra_headers = {"X-Api-Key" = "${GATEWAY_KEY}"})

Without `[[models]]` (or with `--base-url`), the model comes from `OPENAI_BASE_URL` (or
`--base-url`), `OPENAI_API_KEY` (or the variable `--api-key-env` names) and `--model` (or
`OPENAI_MODEL`); with `[[models]]`, `--model LABEL` puts that model first.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from graphloop.checkpointers import ConfigurationError, db_label, is_postgres_url
from graphloop.nodes import DecisionType, ModelConfig, ToolLike, UsageLimits, check_limits

__all__ = ["CONFIG_FILE", "Database", "Flags", "Settings", "as_database", "database_path", "existing_database",
           "load_settings", "load_tools"]

CONFIG_FILE = "graphloop.toml"
_MODEL_KEYS = {"label", "api_url", "model_name", "host_type", "context_k", "max_output_tokens",
               "timeout", "max_retries", "retry_base_delay", "retry_max_delay", "stream", "tool_choice",
               "extra_headers", "extra_body", "text_tool_calls"}


Database = Path | str
"""A SQLite file, or a `postgresql://` URL."""


@dataclass(frozen=True)
class Settings:
    """What a CLI command runs with."""

    models: tuple[ModelConfig, ...]
    tools: tuple[ToolLike, ...] = ()
    confirm_required: tuple[str, ...] = ()
    allowed_decisions: Mapping[str, Sequence[DecisionType]] | None = None
    """Per gated tool, the decisions a person may make (`[allowed_decisions]` in the file)."""
    one_call_per_pause: bool = False
    """Pause once per gated call rather than once per turn (Agent Inbox shows one at a time)."""
    limits: UsageLimits | None = None
    """What each run may spend on model calls (`[limits]` in the file)."""
    db: Database = Path("graphloop.db")


@dataclass(frozen=True)
class Flags:
    """The settings a command was given on its command line (None or empty: not given)."""

    config: Path | None = None
    model: str | None = None
    tools: tuple[str, ...] = ()
    confirm: tuple[str, ...] = ()
    db: Database | None = None
    base_url: str | None = None
    key_env: str = "OPENAI_API_KEY"

    def settings(self) -> Settings:
        """These flags over `config` (or ./graphloop.toml) and the environment."""
        return load_settings(self.config, model=self.model, tools=self.tools, confirm=self.confirm,
                             db=self.db, base_url=self.base_url, key_env=self.key_env)

    def again(self) -> str:
        """The flags another command needs for the same database, config, models and tools, as
        shell words (`--confirm` is not among them: a thread keeps the gate it started with).

        Example:
            >>> Flags(db=Path("/tmp/x.db"), tools=("app:TOOLS",)).again()
            ' --db /tmp/x.db --tools app:TOOLS'
        """
        words = [*_flag("--config", self.config), *_flag("--db", None if self.db is None else db_label(self.db)), *_flag("--model", self.model),
                 *_flag("--base-url", self.base_url)]
        if self.key_env != "OPENAI_API_KEY":
            words += ["--api-key-env", self.key_env]
        for spec in self.tools:
            words += ["--tools", spec]
        return "".join(f" {shlex.quote(w)}" for w in words)


def _flag(name: str, value: Path | str | None) -> list[str]:
    return [] if value is None else [name, str(value)]


def load_tools(specs: Sequence[str]) -> list[ToolLike]:
    """Import tools named `module:attribute` (a tool, or a list of tools).

    Modules are looked for in the working directory first, as `python -m` would.
    """
    if specs and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    tools: list[ToolLike] = []
    for spec in specs:
        module_name, _, attribute = spec.partition(":")
        if not module_name or not attribute:
            raise ConfigurationError(f"tools entry {spec!r} is not of the form 'module:attribute'")
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:  # whatever the module raises: one line, the cause kept
            raise _unloadable(spec, module_name, exc) from exc
        try:
            found: Any = getattr(module, attribute)
        except AttributeError as exc:
            raise ConfigurationError(f"cannot load tools {spec!r}: {exc}") from None
        tools += list(cast(Sequence[ToolLike], found)) if isinstance(found, list | tuple) else [found]
    return tools


def _unloadable(spec: str, module_name: str, exc: BaseException) -> ConfigurationError:
    """The error for tools whose module is not there, or fails as it is imported."""
    if isinstance(exc, ModuleNotFoundError) and exc.name and f"{module_name}.".startswith(f"{exc.name}."):
        return ConfigurationError(f"cannot load tools {spec!r}: no module named {exc.name!r}; check the "
                                  "name, and run graphloop where it can be imported")
    first = (str(exc).splitlines() or [""])[0]
    return ConfigurationError(f"cannot load tools {spec!r}: importing {_module_file(module_name)} raised "
                              f"{type(exc).__name__}: {first}; fix that module (--debug shows where), "
                              "or leave it out of the tools")


def _module_file(name: str) -> str:
    """Where module `name` lives, for a message (its name, if that cannot be found)."""
    try:
        spec = importlib.util.find_spec(name)
    except (Exception, SystemExit):  # a parent package that fails to import
        spec = None
    return spec.origin if spec is not None and spec.origin else repr(name)


def _model(entry: Mapping[str, Any], where: str) -> ModelConfig:
    if "api_key" in entry:
        raise ConfigurationError(f"{where}: put the key in an environment variable and name it with api_key_env")
    unknown = sorted(set(entry) - _MODEL_KEYS - {"api_key_env"})
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {unknown!r}; known: {sorted(_MODEL_KEYS | {'api_key_env'})!r}")
    values = {k: v for k, v in entry.items() if k in _MODEL_KEYS}
    if isinstance(values.get("extra_headers"), dict):  # "${NAME}": a header's secret from the environment
        values["extra_headers"] = {k: _from_env(v, f"{where} extra_headers.{k}")
                                   for k, v in cast(dict[str, Any], values["extra_headers"]).items()}
    key_env = entry.get("api_key_env")
    if key_env is not None:
        if key_env not in os.environ:
            raise ConfigurationError(f"{where}: environment variable {key_env!r} (api_key_env) is not set")
        values["api_key"] = os.environ[key_env]
    return ModelConfig.coerce(values)


def _from_env(value: object, where: str) -> object:
    match = re.fullmatch(r"\$\{(\w+)\}", value) if isinstance(value, str) else None
    if match is None:
        return value
    if match.group(1) not in os.environ:
        raise ConfigurationError(f"{where}: environment variable {match.group(1)!r} is not set")
    return os.environ[match.group(1)]


def _env_model(model_name: str | None, base_url: str | None, key_env: str) -> ModelConfig:
    url = base_url or os.environ.get("OPENAI_BASE_URL")
    name = model_name or os.environ.get("OPENAI_MODEL")
    if not url or not name:
        raise ConfigurationError(
            f"no model configured: add [[models]] to {CONFIG_FILE}, or set OPENAI_BASE_URL (or "
            "pass --base-url) and pass --model (or set OPENAI_MODEL)")
    return ModelConfig.coerce({"label": name, "api_url": url, "model_name": name,
                               "api_key": os.environ.get(key_env, "")})


def load_settings(config: Path | None = None, *, model: str | None = None, tools: Sequence[str] = (),
                  confirm: Sequence[str] = (), db: Database | None = None, base_url: str | None = None,
                  key_env: str = "OPENAI_API_KEY") -> Settings:
    """Settings from `config` (or ./graphloop.toml if present), overridden by the flags given.

    `base_url` and `key_env` (the environment variable holding the key) stand in for
    `OPENAI_BASE_URL` and `OPENAI_API_KEY` when the file has no `[[models]]`.
    """
    path, data = _read_config(config)
    entries = cast(list[Mapping[str, Any]], data.get("models", []))
    models = tuple(_model(e, f"{path} [[models]] #{i + 1}") for i, e in enumerate(entries))
    if not models or base_url is not None:
        models = (_env_model(model, base_url, key_env),)
    elif model is not None:
        chosen = tuple(m for m in models if m.label == model)
        if not chosen:
            raise ConfigurationError(f"--model {model!r} is not a label in {path}: {[m.label for m in models]!r}")
        models = chosen + tuple(m for m in models if m.label != model)
    return Settings(
        models=models,
        tools=tuple(load_tools([*data.get("tools", []), *tools])),
        confirm_required=tuple(dict.fromkeys([*data.get("confirm_required", []), *confirm])),
        allowed_decisions=data.get("allowed_decisions"),
        one_call_per_pause=data.get("one_call_per_pause", False),
        limits=data.get("limits"),
        db=db or _db_of(data),
    )


def as_database(value: str | Path) -> Database:
    """A `postgresql://` URL as it is, anything else as a SQLite file path."""
    return value if isinstance(value, str) and is_postgres_url(value) else Path(value)


def database_path(config: Path | None = None, db: Database | None = None) -> Database:
    """The database a command uses: `db` if given, else the config's `db`, else graphloop.db."""
    return db or _db_of(_read_config(config)[1])


def existing_database(config: Path | None = None, db: Database | None = None) -> Database:
    """`database_path`, refused when it is a file that is not there (reading must not create it)."""
    path = database_path(config, db)
    if isinstance(path, Path) and not path.exists():
        raise ConfigurationError(
            f"no database at {str(path)!r}; give --db or --config, or run a task first")
    return path


def _db_of(data: Mapping[str, Any]) -> Database:
    return as_database(str(data.get("db", "graphloop.db")))


def _read_config(config: Path | None) -> tuple[Path, dict[str, Any]]:
    """`config` (which must exist) or ./graphloop.toml (if it exists), parsed."""
    path = config or Path(CONFIG_FILE)
    if not path.exists():
        if config is not None:
            raise ConfigurationError(f"config file {str(config)!r} does not exist")
        return path, {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None
    _check_shape(path, data)
    return path, data


_SHAPES: dict[str, tuple[type, str]] = {
    "db": (str, 'a string: db = "graphloop.db"'),
    "tools": (list, 'a list: tools = ["myapp.tools:TOOLS"]'),
    "confirm_required": (list, 'a list: confirm_required = ["send_email"]'),
    "models": (list, "[[models]] tables, one per model"),
    "allowed_decisions": (dict, '[allowed_decisions] with send_email = ["approve", "reject"]'),
    "one_call_per_pause": (bool, "true or false: one_call_per_pause = true"),
    "limits": (dict, "[limits] with whole numbers: total_tokens = 200000"),
}


def _check_shape(path: Path, data: Mapping[str, Any]) -> None:
    """Refuse a file whose known keys have the wrong type, naming the key and the right form."""
    for key, (kind, form) in _SHAPES.items():
        if key in data and not isinstance(data[key], kind):
            raise ConfigurationError(f"{path}: {key} = {data[key]!r} should be {form}")
    wrong = check_limits(data.get("limits", {}))
    if wrong:
        raise ConfigurationError(f"{path}: [limits] has wrong values: {'; '.join(wrong)}")
    models = data.get("models", [])
    if any(not isinstance(entry, dict) for entry in models):
        raise ConfigurationError(f"{path}: models should be [[models]] tables, one per model")
