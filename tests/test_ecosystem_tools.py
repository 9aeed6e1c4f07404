"""Tools from the ecosystem: LangChain tools and toolkits, and a real MCP server's tools."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, BaseToolkit, tool
from langchain_mcp_adapters.client import MultiServerMCPClient

from graphloop.graph import ModelConfig, Orchestrator
from graphloop.graph.testing import ScriptedServer, reply, tool_call


@tool
def shout(text: str) -> str:
    """Shout the text."""
    return text.upper()


@tool
def whisper(text: str) -> str:
    """Whisper the text."""
    return text.lower()


class VoiceToolkit(BaseToolkit):
    def get_tools(self) -> list[BaseTool]:
        return [shout, whisper]


def test_langchain_tools_and_a_toolkit_serve_the_loop(server: ScriptedServer, model: ModelConfig, db: Path) -> None:
    orch = Orchestrator([VoiceToolkit()], db=db, models=[model])
    server.add(reply(None, tool_call("shout", text="hey"), tool_call("whisper", text="HUSH")), reply("done"))
    result = orch.run_sync("voices")
    assert server.requests[0].tool_names == ["shout", "whisper"]
    assert [r["result"] for r in result.tool_calls] == ["HEY", "hush"]


async def mcp_tools(effects: Path) -> list[BaseTool]:
    client = MultiServerMCPClient({"files": {
        "command": sys.executable, "args": [str(Path(__file__).parent / "mcp_server.py")],
        "transport": "stdio", "env": {"MCP_EFFECTS": str(effects), "PATH": "/usr/bin:/bin"},
    }})
    return await client.get_tools()


def test_mcp_tools_run_in_the_loop_with_one_behind_the_gate(
    server: ScriptedServer, model: ModelConfig, db: Path, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.log"
    tools = asyncio.run(mcp_tools(effects))
    assert sorted(t.name for t in tools) == ["broken", "erase_note", "read_note"]
    orch = Orchestrator(tools, confirm_required=["erase_note"], db=db, models=[model])
    server.add(reply(None, tool_call("read_note", {"name": "shopping"}), tool_call("broken", reason="x"),
                     tool_call("erase_note", {"name": "shopping"})),
               reply("Erase the shopping note?"))
    paused = orch.run_sync("read, then erase the shopping note")
    assert paused.checkpoint is not None
    assert paused.checkpoint.request["action_requests"][0]["name"] == "erase_note"
    assert effects.read_text() == "read shopping\n"  # the gated call has not run
    sent: Any = server.requests[0].body["tools"]
    schema = next(t for t in sent if t["function"]["name"] == "read_note")["function"]
    assert schema["parameters"]["properties"]["name"]["type"] == "string"
    results = {r["tool"]: r["result"] for r in paused.tool_calls}
    assert results["read_note"] == "note shopping: buy milk"
    assert results["broken"] == "Error executing tool broken: cannot: x"  # the MCP server's own words

    server.add(reply("Erased."))
    done = orch.resume_sync(paused.checkpoint, confirmed=True)
    assert done.response == "Erased."
    assert effects.read_text() == "read shopping\nerase shopping\n"
    assert [r["status"] for r in orch.approvals.tool_calls(paused.thread_id)] == ["success", "error", "success"]
