"""A real MCP server over stdio (the `mcp` package's FastMCP), for the MCP tools test.

Each call appends a line to the file named by MCP_EFFECTS, so the test can see what ran.
"""

from __future__ import annotations

import os

from mcp.server.fastmcp import FastMCP

server = FastMCP("files")


def _record(line: str) -> None:
    with open(os.environ["MCP_EFFECTS"], "a") as effects:
        effects.write(line + "\n")


@server.tool()
def read_note(name: str) -> str:
    """Read a note by name."""
    _record(f"read {name}")
    return f"note {name}: buy milk"


@server.tool()
def erase_note(name: str) -> str:
    """Erase a note for good."""
    _record(f"erase {name}")
    return f"erased {name}"


@server.tool()
def broken(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"cannot: {reason}")


if __name__ == "__main__":
    server.run("stdio")
