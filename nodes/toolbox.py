"""Tools by name: LangChain tools, toolkits and plain functions, with their OpenAI schemas.

MCP servers' tools come in as LangChain tools through `langchain-mcp-adapters`
(`await MultiServerMCPClient({...}).get_tools()`).

Example:
    >>> def add(a: int, b: int) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> box = ToolBox([add])
    >>> box.names
    ('add',)
    >>> box.schemas(["add"])[0]["function"]["name"]
    'add'
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from langchain_core.tools import BaseTool, BaseToolkit, StructuredTool, Tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from graphloop.checkpointers import ConfigurationError

__all__ = ["ToolBox", "ToolExit", "ToolLike", "runs_on_a_thread"]

ToolLike = BaseTool | BaseToolkit | Callable[..., Any]
"""A LangChain tool (`@tool`, `BaseTool`), a toolkit (all its tools), or a plain sync or
async function with a docstring."""


def _expand(tools: Iterable[ToolLike]) -> Iterable[BaseTool | Callable[..., Any]]:
    for tool in tools:
        if isinstance(tool, BaseToolkit):
            yield from tool.get_tools()
        else:
            yield tool


def _as_tool(tool: BaseTool | Callable[..., Any]) -> BaseTool:
    if isinstance(tool, BaseTool):
        return tool
    if not callable(tool):
        raise ConfigurationError(f"tool {tool!r} is neither a LangChain tool nor a function")
    try:
        if inspect.iscoroutinefunction(tool):
            made = StructuredTool.from_function(coroutine=tool)
            return made.model_copy(update={"coroutine": _without_exit(tool)})
        return StructuredTool.from_function(func=tool)
    except ValueError as exc:  # langchain's wording: "Function must have a docstring ..."
        name = getattr(tool, "__name__", repr(tool))
        raise ConfigurationError(
            f"tool {name!r}: {exc}; the docstring is the description the model reads"
        ) from exc


class ToolExit(Exception):
    """A tool called `sys.exit(code)`: the call ends as an error, the process goes on."""

    def __init__(self, code: object) -> None:
        super().__init__(f"the tool called sys.exit({code!r})")
        self.code = code


def _without_exit(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """`function`, whose `SystemExit` becomes a `ToolExit`. LangChain runs an async tool in a
    task of its own, and asyncio lets a task's `SystemExit` stop the whole event loop."""

    @functools.wraps(function)
    async def contained(*args: Any, **kwargs: Any) -> Any:
        try:
            return await function(*args, **kwargs)
        except SystemExit as exc:
            raise ToolExit(exc.code) from exc

    return contained


def runs_on_a_thread(tool: BaseTool) -> bool:
    """Whether `tool` has no async code of its own, so that its `ainvoke` would run its sync
    code on asyncio's default executor (graphloop runs it on its own threads instead).

    Example:
        >>> def now() -> str:
        ...     "The time."
        ...     return "noon"
        >>> runs_on_a_thread(ToolBox([now]).get("now"))
        True
    """
    kind = type(tool)
    if isinstance(tool, StructuredTool | Tool) and kind.ainvoke in (StructuredTool.ainvoke, Tool.ainvoke):
        return tool.coroutine is None
    return kind.ainvoke is BaseTool.ainvoke and kind._arun is BaseTool._arun  # pyright: ignore[reportPrivateUsage]  # LangChain's override point


def _from_text(value: object, schema: object) -> object:
    """`value` read as JSON when it is text and `schema` (a JSON Schema) is not a string's."""
    if not isinstance(value, str) or not isinstance(schema, dict):
        return value
    spec = cast(dict[str, Any], schema)
    options = [cast(dict[str, Any], s) for s in spec.get("anyOf", []) if isinstance(s, dict)]
    kinds = {spec.get("type"), *(s.get("type") for s in options)} - {None}
    if not kinds or "string" in kinds:
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value  # the schema check names the field


class ToolBox:
    """An ordered, name-unique set of tools and their OpenAI function schemas."""

    def __init__(self, tools: Iterable[ToolLike] = ()) -> None:
        self._tools: dict[str, BaseTool] = {}
        for tool in map(_as_tool, _expand(tools)):
            if tool.name in self._tools:
                raise ConfigurationError(f"two tools are named {tool.name!r}; names must be unique")
            self._tools[tool.name] = tool
        self._schemas = {name: convert_to_openai_tool(t) for name, t in self._tools.items()}

    @property
    def names(self) -> tuple[str, ...]:
        """Every tool's name, in the order given."""
        return tuple(self._tools)

    def get(self, name: str) -> BaseTool | None:
        """The tool called `name`, or None."""
        return self._tools.get(name)

    def schemas(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """OpenAI `tools` entries for `names`, in the order given."""
        return [self._schemas[n] for n in names]

    def coerce(self, name: str, args: Mapping[str, object]) -> dict[str, object]:
        """`args` checked and converted by tool `name`'s own argument schema; `ValueError`
        naming the field when a value does not fit.

        Review UIs send every edited field as text: a field that is not a string in the
        schema and arrives as JSON text (`'["bob@example.com"]'`, `"7"`) is read as JSON first.

        Example:
            >>> def invite(emails: list[str], days: int = 7) -> str:
            ...     "Invite people."
            ...     return "ok"
            >>> ToolBox([invite]).coerce("invite", {"emails": '["a@b.c"]', "days": "3"})
            {'emails': ['a@b.c'], 'days': 3}
        """
        tool = self._tools[name]
        parameters: dict[str, Any] = self._schemas[name]["function"].get("parameters", {})
        properties: dict[str, Any] = parameters.get("properties", {})
        values = {key: _from_text(value, properties.get(key)) for key, value in args.items()}
        schema = tool.args_schema
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            return values  # a JSON Schema dict (MCP tools): the tool checks its own arguments
        unknown = sorted(set(values) - set(schema.model_fields))
        if unknown:
            raise ValueError(f"the arguments do not fit {name!r}: {unknown!r} not among its parameters "
                             f"{sorted(schema.model_fields)!r}")
        try:
            checked = schema.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"field {'.'.join(map(str, e['loc']))!r}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors())
            raise ValueError(f"the arguments do not fit {name!r}: {problems}") from None
        dumped = checked.model_dump()
        return {key: dumped.get(key, value) for key, value in values.items()}

    def __len__(self) -> int:
        return len(self._tools)
