"""graphloop against a hand-written tool loop and LangGraph's prebuilt ReAct agent.

Everything runs against the scripted server on loopback, with 2 KB tool results, in one
invocation; figures are ratios to the hand-written loop of the same invocation (these
machines are shared and noisy). Measured:

- time per round at 10, 50 and 200 rounds: the hand-written loop (the `openai` client, no
  persistence), graphloop's Orchestrator (SQLite, durability "sync", the ledger), and
  `create_react_agent` with its SQLite saver; and, to show graphloop's own overhead, the
  hand-written loop with the `openai` client's request transform skipped as graphloop skips it;
- the SQLite file after 50 and 200 rounds, against the bytes of the conversation itself;
- rounds per second with 1, 50 and 200 threads at once (graphloop's async `run` against the
  hand-written loop on `AsyncOpenAI`);
- resuming one paused thread in a database holding 10,000 threads, against one holding one.

First, when the `bench` extra is installed, `bench/peers_bench.py`'s two tables: graphloop per
round beside LangGraph doing nothing (with and without flushes, and without checkpoints), the
httpx loop, LangChain's `create_agent`, pydantic-ai and the OpenAI Agents SDK, interleaved; and
50 threads at once.

Run: pip install -e '.[bench]' && python bench/loop_bench.py  (about eight minutes)
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import platform
import random
import sqlite3
import string
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import openai
from langchain_openai import ChatOpenAI

from graphloop.graph import ModelConfig, Orchestrator
from graphloop.graph.testing import ScriptedReply, ScriptedServer, reply, tool_call

RESULT_CHARS = 2_000
TEXT = string.ascii_letters + string.digits + " " * 10
ROUND_COUNTS = (10, 50, 200)
CONCURRENCY = (1, 50, 200)
CONCURRENT_ROUNDS = 5
THREADS_IN_DB = 10_000


def fetch(doc: int) -> str:
    """Fetch a document: random letters, digits and spaces, which compress about as little as
    text can (graphloop's SQLite savers compress what they store: repeated characters would
    flatter them)."""
    return f"{doc}:" + "".join(random.Random(doc).choices(TEXT, k=RESULT_CHARS - 8))


TOOL_SCHEMA = [{"type": "function", "function": {
    "name": "fetch", "description": "Fetch a document.",
    "parameters": {"type": "object", "properties": {"doc": {"type": "integer"}}, "required": ["doc"]}}}]


def researcher(rounds: int) -> Callable[[dict[str, Any]], ScriptedReply]:
    """`rounds` tool rounds (one call each), then the answer: the same for every system."""
    def answer(body: dict[str, Any]) -> ScriptedReply:
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        return reply("done") if done >= rounds else reply(None, tool_call("fetch", doc=done))
    return answer


# -- the three systems --------------------------------------------------------------------------

def took_turn(messages: list[dict[str, Any]], message: Any) -> bool:
    """Append the model's `message` and its tools' results; False when it answered."""
    messages.append(message.model_dump(exclude_none=True))
    for call in message.tool_calls or ():
        args = json.loads(call.function.arguments)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": fetch(**args)})
    return bool(message.tool_calls)


def hand_loop(url: str, rounds: int, untransformed: bool = False) -> list[dict[str, Any]]:
    """The loop as people write it by hand: call, run the tools, append, repeat.

    `untransformed` sends the messages and tools in `extra_body`, past the client's request
    transform, as graphloop does: the same loop without the cost graphloop avoids.
    """
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read every document."}]
    for _ in range(rounds + 1):
        body: dict[str, Any] = {"messages": messages, "tools": TOOL_SCHEMA}
        if untransformed:
            body = {"messages": [], "tools": [], "extra_body": body}
        if not took_turn(messages, client.chat.completions.create(model="scripted", **body).choices[0].message):
            break
    client.close()
    return messages


async def hand_loop_async(client: openai.AsyncOpenAI, rounds: int) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read every document."}]
    for _ in range(rounds + 1):
        reply = await client.chat.completions.create(model="scripted", messages=messages,  # type: ignore[arg-type]
                                                     tools=TOOL_SCHEMA)  # type: ignore[arg-type]
        if not took_turn(messages, reply.choices[0].message):
            return


def graphloop_run(url: str, rounds: int, db: Path) -> None:
    model = ModelConfig(label="bench", api_url=url, model_name="scripted", max_retries=0, context_k=1000)
    Orchestrator([fetch], db=db, models=[model], max_rounds=rounds + 1).run_sync("Read every document.")


def prebuilt_run(url: str, rounds: int, db: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_react_agent is deprecated in favour of langchain's
        from langgraph.prebuilt import create_react_agent

        with sqlite3.connect(db, check_same_thread=False) as conn:
            agent = create_react_agent(ChatOpenAI(model="scripted", base_url=url, api_key="none",  # type: ignore[arg-type]
                                                  max_retries=0), [fetch], checkpointer=SqliteSaver(conn))
            agent.invoke({"messages": [("user", "Read every document.")]},
                         {"configurable": {"thread_id": "t"}, "recursion_limit": 2 * rounds + 10})


def db_bytes(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in db.parent.iterdir() if p.name.startswith(db.name))


def timed(fn: Callable[..., object], *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


# -- measurements -------------------------------------------------------------------------------

def warm_up(tmp: Path) -> None:
    """One untimed run of each system: imports, and graphloop's token encoding (loaded once
    per process, about 0.3 s), are not a round's cost."""
    with ScriptedServer([researcher(2)] * 40) as server:
        hand_loop(server.url, 2)
        hand_loop(server.url, 2, True)
        graphloop_run(server.url, 2, tmp / "warm-graphloop.db")
        prebuilt_run(server.url, 2, tmp / "warm-prebuilt.db")


def per_round(tmp: Path) -> list[str]:
    warm_up(tmp)
    lines = ["| rounds | hand-written loop | graphloop | ratio | LangGraph prebuilt + SQLite | ratio "
             "| hand-written loop, transform skipped | graphloop's ratio to it |",
             "|---|---|---|---|---|---|---|---|"]
    sizes = ["| rounds | conversation | graphloop db | ratio | prebuilt db | ratio |", "|---|---|---|---|---|---|"]
    for rounds in ROUND_COUNTS:
        with ScriptedServer([researcher(rounds)] * (5 * rounds + 20)) as server:
            hand = timed(hand_loop, server.url, rounds) / rounds
            conversation = len(json.dumps(hand_loop(server.url, rounds)).encode())
            ours_db, theirs_db = tmp / f"g{rounds}.db", tmp / f"p{rounds}.db"
            ours = timed(graphloop_run, server.url, rounds, ours_db) / rounds
            theirs = timed(prebuilt_run, server.url, rounds, theirs_db) / rounds
            bare = timed(hand_loop, server.url, rounds, True) / rounds
        lines.append(f"| {rounds} | {hand * 1000:.1f} ms | {ours * 1000:.1f} ms | {ours / hand:.2f}× | "
                     f"{theirs * 1000:.1f} ms | {theirs / hand:.2f}× | {bare * 1000:.1f} ms | {ours / bare:.2f}× |")
        if rounds in (50, 200):
            ours_size, theirs_size = db_bytes(ours_db), db_bytes(theirs_db)
            sizes.append(f"| {rounds} | {conversation / 1e3:.0f} KB | {ours_size / 1e3:.0f} KB | "
                         f"{ours_size / conversation:.1f}× | {theirs_size / 1e3:.0f} KB | "
                         f"{theirs_size / conversation:.1f}× |")
    return ["## Time per round", *lines, "", "## Database size", *sizes]


async def hand_all(url: str, threads: int) -> None:
    async with openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0) as client:
        await asyncio.gather(*(hand_loop_async(client, CONCURRENT_ROUNDS) for _ in range(threads)))


async def ours_all(orch: Orchestrator, threads: int) -> None:
    await asyncio.gather(*(orch.run("Read every document.") for _ in range(threads)))


def concurrent(tmp: Path) -> list[str]:
    lines = ["| threads at once | hand-written async loop | graphloop | ratio |", "|---|---|---|---|"]
    for threads in CONCURRENCY:
        total = threads * CONCURRENT_ROUNDS
        with ScriptedServer([researcher(CONCURRENT_ROUNDS)] * (2 * threads * (CONCURRENT_ROUNDS + 1))) as server:
            model = ModelConfig(label="bench", api_url=server.url, model_name="scripted", max_retries=0)
            orch = Orchestrator([fetch], db=tmp / f"c{threads}.db", models=[model])
            hand = total / timed(asyncio.run, hand_all(server.url, threads))
            ours = total / timed(asyncio.run, ours_all(orch, threads))
        lines.append(f"| {threads} | {hand:.0f} rounds/s | {ours:.0f} rounds/s | {ours / hand:.2f}× |")
    return ["## Throughput", *lines]


def resume(orch: Orchestrator) -> None:
    orch.resume_sync("seed", confirmed=True)


def resume_among_many(tmp: Path) -> list[str]:
    def paused_db(db: Path, copies: int, server: ScriptedServer) -> Orchestrator:
        model = ModelConfig(label="bench", api_url=server.url, model_name="scripted", max_retries=0)
        orch = Orchestrator([fetch], confirm_required=["fetch"], db=db, models=[model], ask_model_to_confirm=False)
        server.add(reply(None, tool_call("fetch", doc=1)), reply(None, tool_call("fetch", doc=1)))
        orch.run_sync("Read one document.", thread_id="seed")
        orch.run_sync("Read one document.", thread_id="warm-up")  # resumed untimed, first
        with sqlite3.connect(db) as conn:
            for table in ("checkpoints", "writes", "inbox"):
                columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
                rest = ", ".join(c for c in columns if c != "thread_id")
                for n in range(copies - 1):
                    conn.execute(f"INSERT INTO {table} (thread_id, {rest}) SELECT 'copy{n}', {rest} "
                                 f"FROM {table} WHERE thread_id = 'seed'")
        return orch

    with ScriptedServer() as server:
        one, many = paused_db(tmp / "one.db", 1, server), paused_db(tmp / "many.db", THREADS_IN_DB, server)
        server.add(*(reply("done") for _ in range(4)))
        for orch in (one, many):
            orch.resume_sync("warm-up", confirmed=True)
        alone = timed(resume, one)
        among = timed(resume, many)
    return ["## Resume one thread", "| database | resume | ratio |", "|---|---|---|",
            f"| 1 thread | {alone * 1000:.0f} ms | 1 |",
            f"| {THREADS_IN_DB:,} threads | {among * 1000:.0f} ms | {among / alone:.2f}× |"]


PEERS = ("langchain", "pydantic_ai", "agents")
"""What `bench/peers_bench.py` runs beside graphloop: the `bench` extra."""


def beside_peers(tmp: Path) -> list[str]:
    """`bench/peers_bench.py`'s tables (graphloop beside LangGraph's floor, `create_agent`,
    pydantic-ai and the Agents SDK), when the `bench` extra is installed."""
    missing = [name for name in PEERS if importlib.util.find_spec(name) is None]
    if missing:
        return ["## Beside its peers", "",
                f"Not run: {', '.join(missing)} not installed (pip install -e '.[bench]')."]
    import peers_bench

    return ["## Beside its peers", "", *asyncio.run(peers_bench.tables(tmp))]


def main() -> None:
    print(f"# graphloop benchmarks, {date.today()}, {platform.machine()} {platform.system()}, "
          f"Python {sys.version.split()[0]}, {RESULT_CHARS} character tool results\n")
    with tempfile.TemporaryDirectory() as tmp:
        for section in (beside_peers, per_round, concurrent, resume_among_many):
            print("\n".join(section(Path(tmp))), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
