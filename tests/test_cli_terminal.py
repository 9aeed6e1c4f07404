"""`graphloop run` at a real terminal: a child process on a pseudo-terminal, typing at its gate."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphloop.graph import Approvals
from graphloop.graph.testing import ScriptedServer, reply, tool_call

from conftest import SECRET

PROMPT = "[a]pprove, [e]dit or [r]eject? [a]:"
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    """A process on a pseudo-terminal of 80 columns: what it printed, and keys to type."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.fd, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.process = subprocess.Popen(args, stdin=child, stdout=child, stderr=child, env=env,
                                        start_new_session=True)
        os.close(child)
        self.raw = b""
        self.seen = 0

    @property
    def screen(self) -> str:
        """Everything printed so far, without colours, cursor moves and carriage returns."""
        return ESCAPES.sub("", self.raw.decode(errors="replace"))

    def expect(self, text: str, timeout: float = 90) -> str:
        """Wait until `text` is printed after what earlier calls saw; what came up to its end."""
        deadline = time.monotonic() + timeout
        while text not in self.screen[self.seen:]:
            if not self._read(deadline - time.monotonic()):
                raise AssertionError(f"{text!r} never came; the terminal shows:\n{self.screen}")
        end = self.screen.index(text, self.seen) + len(text)
        shown, self.seen = self.screen[self.seen:end], end
        return shown

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def exit_code(self, timeout: float = 90) -> int:
        """Read to the end, wait for the process, and give its exit code."""
        deadline = time.monotonic() + timeout
        while self._read(deadline - time.monotonic()):
            pass
        return self.process.wait(max(deadline - time.monotonic(), 1))

    def close(self) -> None:
        """Stop the process if a failed test left it waiting, and close the terminal."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.fd)

    def _read(self, timeout: float) -> bool:
        if timeout <= 0 or not select.select([self.fd], [], [], timeout)[0]:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the process closed its side
            return False
        self.raw += data
        return bool(data)


@pytest.fixture
def terminal(server: ScriptedServer, db: Path) -> Iterator[Terminal]:
    """`python -m graphloop.graph.cli run` on a terminal, to the gate on delete_file."""
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")), reply("May I delete /tmp/x?"))
    tests = str(Path(__file__).parent)
    env = {"PATH": "/usr/bin:/bin", "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": SECRET,
           "PYTHONPATH": os.pathsep.join([tests, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]),
           "COLUMNS": "80", "TERM": "xterm", "NO_COLOR": "1"}
    started = Terminal([sys.executable, "-m", "graphloop.graph.cli", "run", "delete", "--tools", "conftest:TOOLS",
                        "--confirm", "delete_file", "--model", "scripted", "--db", str(db)], env)
    yield started
    started.close()


def deleted(db: Path) -> list[str]:
    """The audit's statuses of delete_file calls (a run one is "success")."""
    return [c["status"] for c in Approvals(db).tool_calls() if c["tool"] == "delete_file"]


def test_typing_no_at_the_gate_asks_again_and_runs_nothing(terminal: Terminal, server: ScriptedServer,
                                                           db: Path) -> None:
    terminal.expect(PROMPT)
    asked = len(server.requests)  # the round and the question (and, strict, an empty stream)
    for typed in ("no", "x", "deny", "n"):
        terminal.type(typed.encode() + b"\r")
        assert f"{typed!r} is not an answer here; type a (approve), e (edit) or r (reject)" in terminal.expect(PROMPT)
    assert len(server.requests) == asked and deleted(db) == [] and Approvals(db).decisions() == []
    server.add(reply("I kept /tmp/x."))
    terminal.type(b"r\r")
    terminal.expect("a note for the model (optional)")
    terminal.type(b"\r")
    assert terminal.exit_code() == 0, terminal.screen
    assert "I kept /tmp/x." in terminal.screen[terminal.seen:]
    assert [d["decision"] for d in Approvals(db).decisions()] == ["reject"] and deleted(db) == ["rejected"]


def test_the_end_of_input_at_the_gate_leaves_the_thread_waiting(terminal: Terminal, db: Path) -> None:
    terminal.expect(PROMPT)
    terminal.type(b"\x04")
    assert terminal.exit_code() == 1
    [entry] = Approvals(db).pending()
    thread = entry["thread_id"]
    assert len(thread) == 20
    assert f"thread {thread}: answer it with `graphloop approve {thread} --db {db} " in terminal.screen
    assert "no answer: nothing was decided" in terminal.screen
    assert Approvals(db).decisions() == [] and deleted(db) == []


def test_a_run_with_limits_answers_at_its_limit_and_usage_shows_in_the_terminal(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """graphloop.toml's limits on a terminal run: the strict server's empty stream and its re-ask
    spend two of three calls, so the question is graphloop's own and, once approved, the last
    call is the final answer; `graphloop usage` then shows the three calls."""
    db, config = tmp_path / "g.db", tmp_path / "graphloop.toml"
    config.write_text(f'db = "{db}"\ntools = ["conftest:TOOLS"]\nconfirm_required = ["delete_file"]\n\n'
                      '[limits]\nmodel_calls = 3\n\n'
                      f'[[models]]\nlabel = "primary"\napi_url = "{server.url}"\nmodel_name = "scripted"\n')
    server.add(reply(None, tool_call("delete_file", path="/tmp/x")))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *os.environ.get(
        "PYTHONPATH", "").split(os.pathsep)]), "COLUMNS": "100", "TERM": "xterm", "NO_COLOR": "1"}
    run = Terminal([sys.executable, "-m", "graphloop.graph.cli", "run", "delete /tmp/x", "--config", str(config)], env)
    try:
        assert "This action requires your explicit confirmation" in run.expect(PROMPT)
        server.add(reply("Deleted /tmp/x, at the limit."))
        run.type(b"a\r")
        assert run.exit_code() == 0, run.screen
        assert "Deleted /tmp/x, at the limit." in run.screen
    finally:
        run.close()
    assert server.requests[-1].body["tool_choice"] == "none" and deleted(db) == ["success"]
    usage = Terminal([sys.executable, "-m", "graphloop.graph.cli", "usage", "--by", "model", "--config", str(config)], env)
    try:
        assert usage.exit_code() == 0, usage.screen
        [row] = [line for line in usage.screen.splitlines() if "primary" in line]
        assert row.split("│")[2].strip() == "3"
    finally:
        usage.close()
