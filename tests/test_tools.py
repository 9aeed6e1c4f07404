"""Tools: LangChain tools and plain functions, their schemas, and misuse caught at build time."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel

from graphloop.graph import ConfigurationError, LoopContext, ModelConfig, ToolBox, compile_graph
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from test_loop import start, tool_messages


@tool
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


class RepeatArgs(BaseModel):
    text: str
    times: int


class Repeat(BaseTool):
    name: str = "repeat"
    description: str = "Repeat text a number of times."
    args_schema: type[BaseModel] = RepeatArgs

    def _run(self, text: str, times: int) -> str:
        return text * times


def test_langchain_tools_run_in_the_loop_with_their_schemas(server: ScriptedServer, model: ModelConfig) -> None:
    server.add(reply(None, tool_call("shout", text="hi"), tool_call("repeat", text="ab", times=3)),
               reply("done"))
    out = compile_graph().invoke(start("go"), context=LoopContext.create(models=[model], tools=[shout, Repeat()]))
    assert [m.content for m in tool_messages(out)] == ["HI", "ababab"]
    schemas = {t["function"]["name"]: t["function"] for t in server.requests[0].body["tools"]}
    assert schemas["shout"]["description"] == "Upper-case the text."
    assert schemas["repeat"]["parameters"]["required"] == ["text", "times"]


def test_plain_function_schema_comes_from_signature_and_docstring() -> None:
    def book(room: str, hours: int = 1) -> str:
        """Book a meeting room."""
        return room

    [schema] = ToolBox([book]).schemas(["book"])
    function: dict[str, Any] = schema["function"]
    assert function["description"] == "Book a meeting room."
    assert function["parameters"]["properties"]["hours"]["type"] == "integer"
    assert function["parameters"]["required"] == ["room"]


def test_a_function_without_docstring_is_refused_with_a_reason() -> None:
    def bare(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match=r"tool 'bare': .*docstring"):
        ToolBox([bare])


def test_two_tools_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"two tools are named 'shout'"):
        ToolBox([shout, shout])


def test_role_given_as_a_bare_string_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"roles\['user'\]='shout': give a list"):
        LoopContext.create(tools=[shout], roles={"user": "shout"})  # type: ignore[dict-item]


def test_model_config_repr_never_shows_the_key() -> None:
    cfg = ModelConfig.coerce({"api_url": "http://h/v1", "model_name": "m", "api_key": "sk-hidden"})
    assert "sk-hidden" not in repr(cfg) and cfg.label == "m"


def test_model_config_errors_name_the_bad_value() -> None:
    with pytest.raises(ConfigurationError, match=r"host_type='lmstudi0' is not one of"):
        ModelConfig.coerce({"api_url": "http://h", "model_name": "m", "host_type": "lmstudi0"})
    with pytest.raises(ConfigurationError, match=r"unknown keys \['apikey'\]"):
        ModelConfig.coerce({"api_url": "http://h", "model_name": "m", "apikey": "x"})
    with pytest.raises(ConfigurationError, match=r"api_url and model_name are required"):
        ModelConfig.coerce({"api_url": "", "model_name": "m"})
