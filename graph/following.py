"""A run followed at a terminal: tokens as they come, a spinner while tools run, the answer."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from graphloop.graph.results import (
    Finished,
    ModelReply,
    OrchestratorResult,
    Paused,
    RunEvent,
    Token,
    ToolResult,
)

__all__ = ["follow"]


class _Printer:
    """Shows a run's events: tokens as they come, a spinner while tools run, and an answer that
    was not streamed (a server that streams nothing with tools, the round limit's answer)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Status | None = None
        self.mid_line = False
        self.answered = False
        """The latest answer is on the screen."""
        self.streamed = ""
        """The tokens shown since the latest reply."""

    def _stop_spinner(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def _end_line(self) -> None:
        if self.mid_line:
            self.console.print()
            self.mid_line = False

    def show(self, event: RunEvent) -> OrchestratorResult | None:
        if isinstance(event, Token) and event.node == "call_model":
            self._stop_spinner()
            self.console.print(escape(event.text), end="")
            self.mid_line = True
            self.streamed += event.text
        elif isinstance(event, ModelReply):
            self._show_reply(event)
        elif isinstance(event, ToolResult):
            mark = "[green]✓[/green]" if event.status == "success" else "[yellow]![/yellow]"
            self.console.print(f"{mark} {escape(event.name)} → {len(event.text)} chars")
        elif isinstance(event, Paused | Finished):
            self._stop_spinner()
            self._end_line()
            if isinstance(event, Finished):
                if event.result.checkpoint is None and not self.answered:
                    self.console.print(escape(event.result.response), soft_wrap=True)
                return event.result
        return None

    def _show_reply(self, event: ModelReply) -> None:
        streamed, self.streamed = self.streamed, ""
        if not event.message.tool_calls:
            self.answered = True
            if self.mid_line and streamed.strip() != event.message.text.strip():  # a cut stream, asked again
                self._end_line()
                self.console.print("[dim](the stream was cut and the model asked again; its answer:)[/dim]")
            if not self.mid_line:  # not streamed (or not whole): shown whole
                self.console.print(escape(event.message.text), soft_wrap=True)
            return
        self.answered = False
        self._end_line()
        names = ", ".join(c["name"] for c in event.message.tool_calls)
        self.status = self.console.status(f"running {names} …")
        self.status.start()


async def follow(events: AsyncGenerator[RunEvent, None], console: Console) -> OrchestratorResult:
    """Show `events` at the terminal as they come; the run's result."""
    printer = _Printer(console)
    result: OrchestratorResult | None = None
    async for event in events:
        result = printer.show(event) or result
    assert result is not None
    return result
