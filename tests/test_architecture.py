"""docs/architecture.md's path of a run and of a resume is the code's: a real run is traced, and
the modules the Orchestrator's driver calls, in the order it first enters them, are the ones the
page lists; none of them calls back into the Orchestrator."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from graphloop.graph import Orchestrator
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import TOOLS

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "architecture.md").read_text()
DRIVER = "graph/orchestrator.py"


def documented(title: str) -> list[str]:
    """The module each numbered step of a section starts with, the driver left out."""
    section = PAGE.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^\d+\. `((?:graph|nodes|checkpointers)/\w+\.py)`", section, flags=re.M)
    return [s for s in steps if s != DRIVER]


def _ours(frame: FrameType | None) -> str | None:
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    if path.parent.parent == ROOT and path.parent.name in ("graph", "nodes", "checkpointers"):
        return f"{path.parent.name}/{path.name}"
    return None


def traced(run: Any) -> tuple[list[str], list[str]]:
    """Modules entered from the driver, in order of first entry; and any call back into it."""
    entered: list[str] = []
    backs: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event != "call" or (callee := _ours(frame)) is None:
            return
        caller = frame.f_back
        while caller is not None and _ours(caller) is None:  # through contextlib, functools, asyncio
            caller = caller.f_back
        source = _ours(caller)
        if source == DRIVER and callee != DRIVER and callee not in entered:
            entered.append(callee)
        elif callee == DRIVER and source not in (None, DRIVER) and frame.f_code.co_name.startswith("_"):
            backs.append(f"{source} → {frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        asyncio.run(run)
    finally:
        sys.setprofile(None)
    return entered, backs


def test_the_run_path_is_the_one_the_architecture_page_describes(tmp_path: Path) -> None:
    steps = documented("The path of `Orchestrator.run`")
    assert len(steps) == len(set(steps)), "a module is listed twice"
    with ScriptedServer([reply(None, tool_call("add", a=1, b=2)), reply("3")], strict=True) as server:
        orch = Orchestrator(TOOLS, db=tmp_path / "g.db", models=[server.model_config()])
        entered, backs = traced(orch.run("1+2", thread_id="t", user_id="ann"))
    assert entered == steps
    assert backs == []


def test_the_resume_path_is_the_one_the_architecture_page_describes(tmp_path: Path) -> None:
    steps = documented("The path of `Orchestrator.resume`")
    assert len(steps) == len(set(steps)), "a module is listed twice"
    with ScriptedServer([reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I?"),
                         reply("Deleted.")], strict=True) as server:
        orch = Orchestrator(TOOLS, confirm_required=["delete_file"], db=tmp_path / "g.db",
                            models=[server.model_config()])
        paused = orch.run_sync("delete /tmp/x", thread_id="t")
        assert paused.checkpoint is not None
        entered, backs = traced(orch.resume(paused.checkpoint, confirmed=True))
    assert entered == steps
    assert backs == []
