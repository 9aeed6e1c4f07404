"""graphloop beside the loops and frameworks it is compared with, per round and at 50 threads.

Every system runs the same task against the same scripted server on loopback, in one process:
50 rounds of one tool call with a 2,000-character result, then an answer. Systems are run in
turn, three times, and each figure is the median of its three runs, as a ratio to the
hand-written `AsyncOpenAI` loop of the same invocation (these machines are shared and noisy).

- hand-written `AsyncOpenAI` loop (the original's shape, no persistence), and the same loop
  posting JSON with httpx (no SDK request transform, no persistence);
- LangGraph alone: graphloop's three steps per round doing nothing but append the round's two
  messages, on SQLite in WAL mode with `durability="sync"`: with every commit flushed
  (`synchronous=FULL`, SQLite's default), with `synchronous=NORMAL`, and with no checkpointer;
- graphloop's Orchestrator (SQLite, the ledger: one flush per tool round);
- LangChain's `create_agent` with LangGraph's SQLite saver (stock settings);
- a pydantic-ai agent and an OpenAI Agents SDK agent (in memory).

Then 50 threads at once: graphloop's async `run` against the hand-written async loop.

Run: pip install -e '.[bench]' && python bench/peers_bench.py  (about three minutes)
"""

from __future__ import annotations

import asyncio
import json
import platform
import random
import sqlite3
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, TypedDict

import httpx
import openai
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages

from graphloop.graph import ModelConfig, Orchestrator
from graphloop.graph.testing import ScriptedReply, ScriptedServer, reply, tool_call

ROUNDS = 50
THREADS = 50
THREAD_ROUNDS = 5
RESULT_CHARS = 2_000
TEXT = string.ascii_letters + string.digits + " " * 10
TASK = "Read every document."
TOOL_SCHEMA = [{"type": "function", "function": {
    "name": "fetch", "description": "Fetch a document.",
    "parameters": {"type": "object", "properties": {"doc": {"type": "integer"}}, "required": ["doc"]}}}]


def fetch(doc: int) -> str:
    """Fetch a document: random letters, digits and spaces, which compress about as little as
    text can (graphloop's SQLite savers compress what they store: repeated characters would
    flatter them)."""
    return f"{doc}:" + "".join(random.Random(doc).choices(TEXT, k=RESULT_CHARS - 8))


def researcher(rounds: int) -> Callable[[dict[str, Any]], ScriptedReply]:
    """`rounds` tool rounds (one call each), then the answer: the same for every system."""
    def answer(body: dict[str, Any]) -> ScriptedReply:
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        return reply("done") if done >= rounds else reply(None, tool_call("fetch", doc=done))
    return answer


# -- the systems: each runs TASK to its answer against `url` --------------------------------------

async def hand_loop(url: str, rounds: int, _: Path) -> None:
    async with openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0) as client:
        await hand_turns(client, rounds)


async def hand_turns(client: openai.AsyncOpenAI, rounds: int) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": TASK}]
    for _ in range(rounds + 1):
        answer = (await client.chat.completions.create(
            model="scripted", messages=messages, tools=TOOL_SCHEMA)).choices[0].message  # type: ignore[arg-type]
        messages.append(answer.model_dump(exclude_none=True))
        if not answer.tool_calls:
            return
        for call in answer.tool_calls:
            args = json.loads(call.function.arguments)  # type: ignore[union-attr]
            messages.append({"role": "tool", "tool_call_id": call.id, "content": fetch(**args)})


async def httpx_loop(url: str, rounds: int, _: Path) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": TASK}]
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(rounds + 1):
            body = {"model": "scripted", "messages": messages, "tools": TOOL_SCHEMA}
            answer = (await client.post("/chat/completions", json=body)).json()["choices"][0]["message"]
            messages.append(answer)
            for call in answer.get("tool_calls") or []:
                args = json.loads(call["function"]["arguments"])
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": fetch(**args)})
            if not answer.get("tool_calls"):
                return


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    rounds: int


def floor(synchronous: str | None) -> Callable[[str, int, Path], Awaitable[None]]:
    """LangGraph with graphloop's three steps per round (a round whose calls may all run), doing
    nothing but append two messages."""
    async def run(url: str, rounds: int, db: Path) -> None:
        def compact(state: State) -> dict[str, Any]:
            return {}

        def call_model(state: State) -> dict[str, Any]:
            n = state["rounds"]
            return {"messages": [AIMessage("", tool_calls=[{"name": "fetch", "args": {"doc": n}, "id": f"c{n}"}])],
                    "rounds": n + 1}

        def run_tool(state: State) -> dict[str, Any]:
            n = state["rounds"]
            return {"messages": [ToolMessage(fetch(n), tool_call_id=f"c{n - 1}")]}

        builder = StateGraph(State)
        for name, node in (("compact", compact), ("call_model", call_model), ("run_tool", run_tool)):
            builder.add_node(name, node)  # pyright: ignore[reportUnknownMemberType]
        builder.add_edge(START, "compact")
        builder.add_edge("compact", "call_model")
        builder.add_edge("call_model", "run_tool")
        builder.add_conditional_edges("run_tool", lambda s: "compact" if s["rounds"] < rounds else "__end__",
                                      ["compact", "__end__"])
        start = {"messages": [("user", TASK)], "rounds": 0}
        config: Any = {"configurable": {"thread_id": "t"}, "recursion_limit": 5 * rounds + 10}
        if synchronous is None:
            await builder.compile().ainvoke(start, config)  # pyright: ignore[reportUnknownMemberType]
            return
        async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
            await saver.setup()
            await saver.conn.execute(f"PRAGMA synchronous={synchronous}")
            await builder.compile(checkpointer=saver).ainvoke(start, config, durability="sync")  # pyright: ignore[reportUnknownMemberType]
    return run


async def graphloop_run(url: str, rounds: int, db: Path) -> None:
    model = ModelConfig(label="bench", api_url=url, model_name="scripted", max_retries=0, context_k=1000)
    await Orchestrator([fetch], db=db, models=[model], max_rounds=rounds + 1).run(TASK)


async def create_agent_run(url: str, rounds: int, db: Path) -> None:
    from langchain.agents import create_agent
    from langchain_openai import ChatOpenAI

    async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
        agent = create_agent(ChatOpenAI(model="scripted", base_url=url, api_key="none", max_retries=0),  # type: ignore[arg-type]
                             [fetch], checkpointer=saver)
        await agent.ainvoke({"messages": [("user", TASK)]},
                            {"configurable": {"thread_id": "t"}, "recursion_limit": 2 * rounds + 10})


async def pydantic_ai_run(url: str, rounds: int, _: Path) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.usage import UsageLimits

    model = OpenAIChatModel("scripted", provider=OpenAIProvider(base_url=url, api_key="none"))
    agent = Agent(model, tools=[fetch])
    await agent.run(TASK, usage_limits=UsageLimits(request_limit=rounds + 5))


async def agents_sdk_run(url: str, rounds: int, _: Path) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # no network: traces would go to OpenAI
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)
    agent = Agent(name="researcher", model=OpenAIChatCompletionsModel(model="scripted", openai_client=client),
                  tools=[function_tool(fetch)])
    await Runner.run(agent, TASK, max_turns=rounds + 5)


HAND = "hand-written `AsyncOpenAI` loop (no persistence)"
HTTPX = "the same loop posting JSON with httpx (no SDK transform, no persistence)"
BARE_FLOOR = "the same with no checkpoints at all"
GRAPHLOOP = "**graphloop** (Orchestrator, SQLite, ledger)"
SYSTEMS: dict[str, Callable[[str, int, Path], Awaitable[None]]] = {
    HAND: hand_loop,
    HTTPX: httpx_loop,
    "LangGraph alone, three steps per round doing nothing, SQLite WAL, `durability=\"sync\"`": floor("FULL"),
    "the same with `PRAGMA synchronous=NORMAL`": floor("NORMAL"),
    BARE_FLOOR: floor(None),
    GRAPHLOOP: graphloop_run,
    "LangChain `create_agent` + SQLite saver": create_agent_run,
    "pydantic-ai agent (in memory)": pydantic_ai_run,
    "OpenAI Agents SDK (in memory)": agents_sdk_run,
}


async def per_round(tmp: Path) -> list[str]:
    times: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    for attempt in range(4):  # the first is a warm-up (imports, token encodings), not counted
        for n, (name, system) in enumerate(SYSTEMS.items()):
            with ScriptedServer([researcher(ROUNDS)] * (ROUNDS + 5)) as server:
                started = time.perf_counter()
                await system(server.url, ROUNDS, tmp / f"r{attempt}-{n}.db")
                if attempt:
                    times[name].append((time.perf_counter() - started) / ROUNDS * 1000)
    ms = {name: statistics.median(measured) for name, measured in times.items()}
    base = ms[HAND]
    lines = ["| loop | ms per round | ratio to the hand-written loop |", "|---|---|---|"]
    lines += [f"| {name} | {value:.1f} | {value / base:.2f} |" for name, value in ms.items()]
    floor_and_httpx = ms[BARE_FLOOR] + ms[HTTPX]
    return [f"## Per round, {ROUNDS} rounds (medians of 3)", *lines, "",
            f"graphloop per round: {ms[GRAPHLOOP] / floor_and_httpx:.2f}× the no-checkpoint floor plus the "
            f"httpx loop ({floor_and_httpx:.1f} ms; issue 16's target: at most 1.3×), "
            f"{ms[GRAPHLOOP] / base:.2f}× the hand-written loop (target: at most 0.6×)"]


async def threads(tmp: Path) -> list[str]:
    rates: dict[str, list[float]] = {"hand-written async loop": [], "graphloop": []}
    total = THREADS * THREAD_ROUNDS
    for attempt in range(3):
        with ScriptedServer([researcher(THREAD_ROUNDS)] * (2 * THREADS * (THREAD_ROUNDS + 1) + 5)) as server:
            async with openai.AsyncOpenAI(base_url=server.url, api_key="none", max_retries=0) as client:
                started = time.perf_counter()
                await asyncio.gather(*(hand_turns(client, THREAD_ROUNDS) for _ in range(THREADS)))
                rates["hand-written async loop"].append(total / (time.perf_counter() - started))
            model = ModelConfig(label="bench", api_url=server.url, model_name="scripted", max_retries=0)
            orch = Orchestrator([fetch], db=tmp / f"t{attempt}.db", models=[model])
            started = time.perf_counter()
            await asyncio.gather(*(orch.run(TASK) for _ in range(THREADS)))
            rates["graphloop"].append(total / (time.perf_counter() - started))
    base = statistics.median(rates["hand-written async loop"])
    lines = ["| system | rounds per second | ratio |", "|---|---|---|"]
    lines += [f"| {name} | {statistics.median(r):.0f} | {statistics.median(r) / base:.2f} |" for name, r in rates.items()]
    return [f"## {THREADS} threads at once, {THREAD_ROUNDS} rounds each (medians of 3)", *lines, "",
            "issue 16's target: graphloop at least 0.7× the hand-written async loop"]


async def tables(tmp: Path) -> list[str]:
    """Both tables, with the versions measured: what `bench/loop_bench.py` prints first."""
    return [versions(), "", *await per_round(tmp), "", *await threads(tmp)]


def versions() -> str:
    names = ("graphloop", "langgraph", "langchain", "openai", "pydantic-ai-slim", "openai-agents")
    return ", ".join(f"{n} {version(n)}" for n in names) + f", SQLite {sqlite3.sqlite_version}"


async def main() -> None:
    print(f"# graphloop beside its peers, {date.today()}, {platform.machine()} {platform.system()}, "
          f"Python {sys.version.split()[0]}\n")
    with tempfile.TemporaryDirectory() as tmp:
        print("\n".join(await tables(Path(tmp))), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
