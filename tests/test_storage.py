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


def _layout(conn: sqlite3.Connection) -> dict[str, Any]:
    """Each checkpoint table's columns (name, type, not null, default, key position) and whether
    it has rowids."""
    def has_rowid(table: str) -> bool:
        try:
            conn.execute(f"SELECT rowid FROM {table} LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            return False
        return True

    return {table: ([row[1:] for row in conn.execute(f"PRAGMA table_info({table})")], has_rowid(table))
            for table in ("checkpoints", "writes")}


def test_a_new_file_keeps_langgraphs_columns_and_keys_with_checkpoints_stored_without_rowids(tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    stock = sqlite3.connect(tmp_path / "stock.db", check_same_thread=False)
    SqliteSaver(stock).setup()
    with open_saver(tmp_path / "ours.db"):
        pass
    ours = sqlite3.connect(tmp_path / "ours.db")
    theirs, mine = _layout(stock), _layout(ours)
    assert {t: columns for t, (columns, _) in mine.items()} == {t: columns for t, (columns, _) in theirs.items()}
    assert (mine["checkpoints"][1], mine["writes"][1], theirs["checkpoints"][1]) == (False, True, True)
    assert ours.execute("PRAGMA page_size").fetchone()[0] == 8192
    stock.close()
    ours.close()


def test_a_file_made_before_keeps_its_tables_and_pages(tmp_path: Path) -> None:
    import shutil

    db = shutil.copy(Path(__file__).parent / "fixtures" / "paused-0.4.0.db", tmp_path / "old.db")
    with sqlite3.connect(db) as conn:
        before = (_layout(conn), conn.execute("PRAGMA page_size").fetchone()[0])
    with open_saver(db):
        pass
    with sqlite3.connect(db) as conn:
        assert (_layout(conn), conn.execute("PRAGMA page_size").fetchone()[0]) == before
    assert before[0]["checkpoints"][1] is True and before[1] == 4096


def test_a_stock_saver_reads_a_new_files_checkpoints(
    server: ScriptedServer, context: LoopContext, tmp_path: Path
) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from graphloop.checkpointers.compression import CompressedSerializer

    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    config: Any = {"configurable": {"thread_id": "t"}}
    with open_saver(tmp_path / "g.db") as saver:
        compile_graph(saver).invoke(start("add"), config, context=context)
    with sqlite3.connect(tmp_path / "g.db", check_same_thread=False) as conn:
        latest = SqliteSaver(conn, serde=CompressedSerializer()).get_tuple(config)
    assert latest is not None and latest.checkpoint["channel_values"]["rounds"] == 2
