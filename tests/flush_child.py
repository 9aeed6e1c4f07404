"""Run graphloop rounds against the scripted server, for tests/test_durability.py to count the
disk flushes they cost (under strace).

    python tests/flush_child.py tools ROUNDS DB    one run of ROUNDS tool rounds, then its answer
    python tests/flush_child.py answers RUNS DB    RUNS runs at once, each one answer round
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from graphloop.graph import Orchestrator
from graphloop.graph.testing import ScriptedReply, ScriptedServer, reply, tool_call


def fetch(doc: int) -> str:
    """Fetch a document."""
    os.access(f"/graphloop-tool-starts-{doc}", os.F_OK)  # a mark in the trace: the side effect begins
    return f"{doc}:" + "x" * 2000


def researcher(rounds: int) -> Any:
    def answer(body: dict[str, Any]) -> ScriptedReply:
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        return reply("done") if done >= rounds else reply(None, tool_call("fetch", doc=done))
    return answer


async def main(mode: str, count: int, db: str) -> None:
    rounds = count if mode == "tools" else 0
    with ScriptedServer([researcher(rounds)] * (count + 2), strict=True) as server:
        orch = Orchestrator([fetch], db=db, models=[server.model_config()])
        if mode == "tools":
            assert (await orch.run("read", thread_id="t")).response == "done"
        else:
            results = await asyncio.gather(*(orch.run("hi", thread_id=f"t{n}") for n in range(count)))
            assert [r.response for r in results] == ["done"] * count


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
