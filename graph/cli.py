"""The `graphloop` command: run a task, answer what waits, read a thread, draw the graph.

Models and tools come from `graphloop.toml` or the OpenAI environment variables (see
`graphloop.graph.settings`). Errors print one line; `--debug` shows the traceback.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from graphloop.checkpointers import ConfigurationError, GraphloopError, UnknownThreadError, open_saver
from graphloop.graph.approvals import Approvals
from graphloop.graph.builder import compile_graph
from graphloop.graph.demo import run_demo
from graphloop.graph.drawing import draw, draw_png
from graphloop.graph.orchestrator import Orchestrator
from graphloop.graph.results import (
    Finished,
    ModelReply,
    OrchestratorResult,
    Paused,
    PendingConfirmation,
    RunEvent,
    Token,
    ToolResult,
)
from graphloop.graph.retention import parse_age
from graphloop.graph.settings import database_path, load_settings
from graphloop.nodes import Decision

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="graphloop: an OpenAI-compatible tool loop as a LangGraph graph.")
console = Console(highlight=False)
_options = {"debug": False}

P = ParamSpec("P")
R = TypeVar("R")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="graphloop.toml to read (default: ./graphloop.toml)")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name (with OPENAI_BASE_URL) or a label from graphloop.toml")]
ToolsOpt = Annotated[list[str] | None, typer.Option("--tools", help="Tools to load, as module:attribute (repeatable)")]
ConfirmOpt = Annotated[list[str] | None, typer.Option("--confirm", help="A tool that needs confirmation (repeatable)")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="SQLite file (default: graphloop.db)")]
UrlOpt = Annotated[str | None, typer.Option("--base-url", help="The OpenAI-compatible API root (default: OPENAI_BASE_URL)")]
KeyEnvOpt = Annotated[str, typer.Option("--api-key-env", help="Environment variable holding the API key")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who decides (recorded in the audit)")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks")] = False) -> None:
    _options["debug"] = debug


def _one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print graphloop's errors as one line and exit 1, unless --debug."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except GraphloopError as exc:
            if _options["debug"]:
                raise
            console.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None

    return run


def _orchestrator(config: Path | None, model: str | None, tools: list[str] | None,
                  confirm: list[str] | None, db: Path | None, base_url: str | None = None,
                  key_env: str = "OPENAI_API_KEY") -> Orchestrator:
    settings = load_settings(config, model=model, tools=tools or (), confirm=confirm or (), db=db,
                             base_url=base_url, key_env=key_env)
    return Orchestrator(list(settings.tools), confirm_required=settings.confirm_required,
                        db=settings.db, models=list(settings.models))


class _Printer:
    """Shows a run's events: tokens as they come, a spinner while tools run."""

    def __init__(self) -> None:
        self.status: Status | None = None
        self.mid_line = False

    def _stop_spinner(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def show(self, event: RunEvent) -> OrchestratorResult | None:
        if isinstance(event, Token) and event.node == "call_model":
            self._stop_spinner()
            console.print(escape(event.text), end="")
            self.mid_line = True
        elif isinstance(event, ModelReply) and event.message.tool_calls:
            if self.mid_line:
                console.print()
                self.mid_line = False
            names = ", ".join(c["name"] for c in event.message.tool_calls)
            self.status = console.status(f"running {names} …")
            self.status.start()
        elif isinstance(event, ToolResult):
            mark = "[green]✓[/green]" if event.status == "success" else "[yellow]![/yellow]"
            console.print(f"{mark} {escape(event.name)} → {len(event.text)} chars")
        elif isinstance(event, Paused | Finished):
            self._stop_spinner()
            if self.mid_line:
                console.print()
                self.mid_line = False
            if isinstance(event, Finished):
                return event.result
        return None


async def _follow(events: Any) -> OrchestratorResult:
    printer = _Printer()
    result: OrchestratorResult | None = None
    async for event in events:
        result = printer.show(event) or result
    assert result is not None
    return result


def _ask(checkpoint: PendingConfirmation) -> dict[str, Any]:
    """Ask the person at the terminal; the keyword arguments for `resume`."""
    if checkpoint.kind == "question":
        return {"answer": typer.prompt(checkpoint.question)}
    console.print(f"[bold]{checkpoint.question}[/bold]")
    decisions: list[Decision] = []
    for action in checkpoint.request["action_requests"]:
        console.print(escape(f"  {action['name']}({json.dumps(action['args'], ensure_ascii=False)})"))
        choice = typer.prompt("  [a]pprove, [e]dit or [r]eject?", default="a")[:1].lower()
        if choice == "e":
            args = json.loads(typer.prompt("  arguments as JSON", default=json.dumps(action["args"])))
            decisions.append(Decision(type="edit", edited_action={"name": action["name"], "args": args}))
        elif choice == "r":
            note = typer.prompt("  a note for the model (optional)", default="", show_default=False)
            decisions.append(Decision(type="reject", message=note) if note else Decision(type="reject"))
        else:
            decisions.append(Decision(type="approve"))
    return {"decisions": decisions}


def _report(result: OrchestratorResult) -> None:
    if result.checkpoint is None:
        return
    console.print(f"[yellow]waiting:[/yellow] {escape(result.checkpoint.question)}", soft_wrap=True)
    console.print(f"thread {result.thread_id}: answer it with `graphloop approve {result.thread_id}` "
                  f"or `graphloop reject {result.thread_id}`")


@app.command()
@_one_line_errors
def run(
    task: Annotated[str, typer.Argument(help="What the model should do")],
    model: ModelOpt = None, config: ConfigOpt = None, tools: ToolsOpt = None,
    confirm: ConfirmOpt = None, db: DbOpt = None,
    thread: Annotated[str | None, typer.Option(help="Continue this thread")] = None,
    user: Annotated[str | None, typer.Option(help="User id (remembered rules, audit)")] = None,
    system: Annotated[str, typer.Option(help="System prompt")] = "",
    no_input: Annotated[bool, typer.Option("--no-input", help="Leave a confirmation pending")] = False,
    base_url: UrlOpt = None, api_key_env: KeyEnvOpt = "OPENAI_API_KEY",
) -> None:
    """Run a task with live output; answer the confirmation gate here, or leave it pending."""
    orch = _orchestrator(config, model, tools, confirm, db, base_url, api_key_env)

    async def go() -> OrchestratorResult:
        result = await _follow(orch.stream(task, system_prompt=system, thread_id=thread, user_id=user))
        while result.checkpoint is not None and not no_input:
            answer = _ask(result.checkpoint)
            result = await _follow(orch.stream_resume(result.checkpoint, decided_by=user, **answer))
        return result

    _report(asyncio.run(go()))


def _decide(thread: str, confirmed: bool, message: str | None, by: str | None, orch: Orchestrator) -> None:
    decisions: list[Decision] | None = None
    if message:  # a note for the model: one reject decision per call the thread waits on
        waiting = [e for e in orch.approvals.pending() if e["thread_id"] == thread]
        calls = len(waiting[0]["calls"]) if waiting else 1
        decisions = [Decision(type="reject", message=message) for _ in range(calls)]
    options: dict[str, Any] = {"decisions": decisions} if decisions else {"confirmed": confirmed}
    _report(asyncio.run(_follow(orch.stream_resume(thread, decided_by=by, **options))))


@app.command()
@_one_line_errors
def approve(
    thread: Annotated[str, typer.Argument(help="The waiting thread")], by: ByOpt = None,
    model: ModelOpt = None, config: ConfigOpt = None, tools: ToolsOpt = None,
    confirm: ConfirmOpt = None, db: DbOpt = None,
) -> None:
    """Approve every call a thread waits on, and let it run on."""
    _decide(thread, True, None, by, _orchestrator(config, model, tools, confirm, db))


@app.command()
@_one_line_errors
def reject(
    thread: Annotated[str, typer.Argument(help="The waiting thread")], by: ByOpt = None,
    message: Annotated[str | None, typer.Option(help="Told to the model")] = None,
    model: ModelOpt = None, config: ConfigOpt = None, tools: ToolsOpt = None,
    confirm: ConfirmOpt = None, db: DbOpt = None,
) -> None:
    """Reject every call a thread waits on, and let it run on."""
    _decide(thread, False, message, by, _orchestrator(config, model, tools, confirm, db))


@app.command()
@_one_line_errors
def pending(
    config: ConfigOpt = None, db: DbOpt = None,
    user: Annotated[str | None, typer.Option(help="Only this user's threads")] = None,
) -> None:
    """List the threads waiting for a decision."""
    entries = Approvals(database_path(config, db)).pending(user)
    table = Table("thread", "waiting since", "calls", "question")
    for e in entries:
        calls = "\n".join(f"{c['name']}({json.dumps(c['args'], ensure_ascii=False)})" for c in e["calls"])
        table.add_row(e["thread_id"], e["waiting_since"][:19], calls, e["question"])
    console.print(table if entries else "nothing is waiting")


@app.command()
@_one_line_errors
def history(
    thread: Annotated[str, typer.Argument(help="The thread to show")],
    config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    """Show a thread's messages as a table."""
    path = database_path(config, db)
    with open_saver(path) as saver:
        messages = compile_graph(saver).get_state({"configurable": {"thread_id": thread}}).values.get("messages")
    if not messages:
        raise UnknownThreadError(f"no thread {thread!r} in the database {str(path)!r}")
    table = Table("#", "role", "content", "tool calls")
    for i, m in enumerate(messages):
        calls = "\n".join(f"{c['name']}({json.dumps(c['args'], ensure_ascii=False)})"
                          for c in getattr(m, "tool_calls", []))
        table.add_row(str(i), m.type, m.text[:200], calls)
    console.print(table)


@app.command()
@_one_line_errors
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age of the last activity: 30d, 12h, 45m, 10s")],
    audit: Annotated[bool, typer.Option("--audit", help="Delete their audit rows too")] = False,
    config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    """Delete finished threads older than an age and reclaim the space (paused ones stay)."""
    try:
        age = parse_age(older_than)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    report = Orchestrator(db=database_path(config, db)).prune_sync(age, audit=audit)
    console.print(f"deleted {len(report.deleted)} finished thread(s); {report.kept} kept")


@app.command()
def demo(
    db: Annotated[Path | None, typer.Option(help="SQLite file to use (default: a new temp file)")] = None,
) -> None:
    """Run the loop offline: pause at a confirmation gate, resume in a new process."""
    run_demo(db)


@app.command("graph")
@_one_line_errors
def drawing(
    format: Annotated[Literal["mermaid", "ascii", "png"], typer.Option("--format", help="Drawing format")] = "mermaid",
    output: Annotated[Path, typer.Option(help="Where the PNG goes")] = Path("graph.png"),
) -> None:
    """Draw the graph, offline: Mermaid source, ASCII art, or a PNG file."""
    graph = compile_graph()
    if format == "png":
        console.print(f"wrote {draw_png(graph, output)}")
    else:
        typer.echo(draw(graph, format))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
