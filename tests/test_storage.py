"""What a thread costs on disk: checkpoints per round, and no full copies of a long history."""

from __future__ import annotations

import random
import sqlite3
import string
from pathlib import Path
from typing import Any

from graphloop.graph import LoopContext, ModelConfig, compile_graph, memory_saver, open_saver
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from test_loop import start


def test_a_round_whose_calls_may_all_run_saves_three_checkpoints(server: ScriptedServer, context: LoopContext) -> None:
    """compact, call_model, run_tool: `execute_tools` has nothing to do, so it is not a step."""
    def checkpoints(tool_rounds: int, thread: str) -> int:
        server.add(*(reply(None, tool_call("add", a=n, b=1)) for n in range(tool_rounds)), reply("done"))
        graph = compile_graph(checkpointer=saver)
        config: Any = {"configurable": {"thread_id": thread}}
        graph.invoke(start("sum"), config, context=context)
        return len(list(graph.get_state_history(config)))

    saver = memory_saver()
    assert checkpoints(3, "three") - checkpoints(1, "one") == 2 * 3


def test_a_long_history_is_stored_once_not_copied_into_checkpoints(
    server: ScriptedServer, model: ModelConfig, tmp_path: Path
) -> None:
    def read(page: int) -> str:
        """Read one page of the manual."""
        # random text: the savers compress what they store, and repeated words would vanish
        return f"page {page}: " + "".join(random.Random(page).choices(string.ascii_letters + string.digits, k=3_000))

    rounds = 60  # 120 writes to messages: LangGraph's default would have copied the history once
    server.add(*(reply(None, tool_call("read", page=n)) for n in range(rounds)), reply("done"))
    context = LoopContext.create(models=[model], tools=[read])
    db = tmp_path / "long.db"
    with open_saver(db) as saver:
        out = compile_graph(saver).invoke(start("read it all", max_rounds=rounds + 1),
                                          {"configurable": {"thread_id": "long"}}, context=context)
    assert len(out["messages"]) == 2 * rounds + 2
    with sqlite3.connect(db) as conn:
        largest, history = conn.execute("SELECT max(length(checkpoint)), (SELECT sum(length(value)) FROM writes "
                                        "WHERE channel = 'messages') FROM checkpoints").fetchone()
    assert history > 130_000 and largest < 4_000
