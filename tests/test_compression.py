"""The SQLite savers' compressed rows: a frozen dictionary, rows that round-trip, plain rows read."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from graphloop.checkpointers import COMPRESSED, CompressedSerializer, expanded
from graphloop.checkpointers.compression import _DICTIONARY  # pyright: ignore[reportPrivateUsage]  # the stored format
from graphloop.graph import ModelConfig, Orchestrator
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import TOOLS


def test_the_dictionary_is_frozen() -> None:
    """Changing it would make every stored row unreadable: a new one needs a new type tag."""
    assert hashlib.sha256(_DICTIONARY).hexdigest() == "461c4a687311171efe1370fc5db49c8f2469c8a24fa6b40297cfc481b8b08c0e"


def test_messages_round_trip_compressed_and_small_or_random_values_stay_plain() -> None:
    serde = CompressedSerializer()
    messages = [AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1"}], id="a1"),
                ToolMessage("1 " * 200, tool_call_id="c1", name="add", id="t1")]
    kind, data = serde.dumps_typed(messages)
    assert kind == COMPRESSED and len(data) < len(JsonPlusSerializer().dumps_typed(messages)[1]) // 4
    assert serde.loads_typed((kind, data)) == messages
    assert expanded(data) == JsonPlusSerializer().dumps_typed(messages)[1]
    assert serde.dumps_typed({"a": 1})[0] == "msgpack"  # too small to gain
    noise = os.urandom(600)
    assert serde.dumps_typed(noise) == ("bytes", noise)  # only msgpack rows are compressed


def test_a_row_langgraph_wrote_is_read_as_it_is() -> None:
    plain = JsonPlusSerializer().dumps_typed({"channel_values": {"rounds": 3}})
    assert CompressedSerializer().loads_typed(plain) == {"channel_values": {"rounds": 3}}


def test_a_run_stores_its_checkpoints_compressed_and_reads_them_back(
        server: ScriptedServer, model: ModelConfig, sqlite_db: Path) -> None:
    server.add(reply(None, tool_call("add", a=1, b=2)), reply("3"))
    orch = Orchestrator(TOOLS, db=sqlite_db, models=[model])
    result = orch.run_sync("add")
    with sqlite3.connect(sqlite_db) as conn:
        kinds = dict(conn.execute("SELECT type, count(*) FROM checkpoints GROUP BY type").fetchall())
        largest = conn.execute("SELECT max(length(checkpoint)) FROM checkpoints").fetchone()[0]
    assert kinds.get(COMPRESSED, 0) >= 4 and largest < 400
    server.add(reply("still 3"))
    assert orch.run_sync("again?", thread_id=result.thread_id).response == "still 3"


def test_a_damaged_row_is_refused_as_damaged_not_read_as_wrong_data() -> None:
    from graphloop.checkpointers import UnusableDatabaseError

    kind, data = CompressedSerializer().dumps_typed({"note": "x" * 300, "n": list(range(50))})
    damaged = data[:10] + bytes([data[10] ^ 0xFF]) + data[11:]
    with pytest.raises(UnusableDatabaseError, match=r"a stored checkpoint row is damaged .*restore it from a backup"):
        CompressedSerializer().loads_typed((kind, damaged))
