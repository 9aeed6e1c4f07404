"""`graphloop demo`: the whole loop offline, paused in one process and resumed in another.

A scripted model (a real HTTP server on 127.0.0.1) asks for a plain tool and a gated one; the
plain one runs, the run pauses with a confirmation question and is saved to SQLite. A second
OS process opens the same file, approves, and prints the final answer.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from graphloop.graph.orchestrator import Orchestrator
from graphloop.graph.testing import ScriptedReply, ScriptedServer, reply, tool_call

__all__ = ["TASK", "finish", "get_weather", "run_demo", "send_email", "start"]

TASK = "Check the weather in Paris and email it to ann@example.com."


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"{city}: sunny, 21 °C, light wind from the west"


def send_email(to: str, subject: str, body: str) -> str:
    """Send an email on the user's behalf."""
    return f"Email to {to} sent (subject {subject!r}, {len(body)} chars)"


def _orchestrator(db: Path, server: ScriptedServer) -> Orchestrator:
    return Orchestrator([get_weather, send_email], confirm_required=["send_email"], db=db,
                        models=[server.model_config(label="demo-model", api_key="sk-demo-not-stored")])


def _final_answer(body: dict[str, Any]) -> ScriptedReply:
    """Answer from the tool results the request carries, so the demo shows real data flow."""
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    return reply("Done. " + " ".join(f"({i}) {r}." for i, r in enumerate(results, 1)))


def start(db: Path) -> tuple[str, str]:
    """Run the task until it pauses; return (thread id, confirmation question)."""
    script = [
        reply(None, tool_call("get_weather", city="Paris"),
              tool_call("send_email", to="ann@example.com", subject="Weather in Paris",
                        body="Sunny, 21 °C, light wind from the west.")),
        reply("I checked the weather in Paris (sunny, 21 °C). May I email it to "
              "ann@example.com with the subject 'Weather in Paris'?"),
    ]
    with ScriptedServer(script) as server:
        result = _orchestrator(db, server).run_sync(TASK)
        server.assert_all_used()
    assert result.checkpoint is not None, "the demo run should pause for confirmation"
    return result.thread_id, result.response


def finish(db: Path, thread_id: str) -> str:
    """Approve the paused call and return the final answer."""
    with ScriptedServer([_final_answer]) as server:
        result = _orchestrator(db, server).resume_sync(thread_id, confirmed=True)
        server.assert_all_used()
    return result.response


def run_demo(db: Path | None = None, console: Console | None = None) -> str:
    """Pause here, resume in a child process; print both halves. Returns the final answer."""
    console = console or Console()
    db = db or Path(tempfile.mkdtemp(prefix="graphloop-demo-")) / "graphloop.db"
    console.rule("[bold]1. run (this process)")
    console.print(f"task: {TASK}")
    thread_id, question = start(db)
    console.print("[green]get_weather[/] ran; [yellow]send_email[/] needs confirmation.")
    console.print(f"paused, saved to {db}\nthread: {thread_id}")
    console.print(f"[bold]question:[/] {question}")
    console.rule("[bold]2. resume (a new process, same SQLite file): approve")
    child = subprocess.run(
        [sys.executable, "-m", "graphloop.graph.demo", str(db), thread_id],
        capture_output=True, text=True, check=True,
    )
    answer = child.stdout.strip()
    console.print(f"[bold]answer:[/] {answer}")
    return answer


if __name__ == "__main__":
    print(finish(Path(sys.argv[1]), sys.argv[2]))
