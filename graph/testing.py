"""A scripted OpenAI-compatible server for tests: real HTTP on 127.0.0.1, JSON and SSE.

Give it the replies the "model" should send, in order; point a `ModelConfig` at it; run your
graph; then look at the requests it received and check every reply was used.

Example:
    >>> with ScriptedServer([reply("Hello!")]) as server:
    ...     cfg = server.model_config()
    ...     # ... run the graph with models=[cfg] ...
    ...     # server.requests[0].body["messages"] is what the model saw

`ScriptedServer(strict=True)` answers like the real servers people run (llama-cpp-python, Open
WebUI, LiteLLM) and refuses what they refuse; see `graphloop.graph.strict` for the rules.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from graphloop.graph.scripted_http import RecordedRequest, Server, handler_for
from graphloop.graph.strict import (
    TOOLS_IGNORED_TEXT,
    Refusal,
    RefusalKind,
    Rejection,
    auth_rejection,
    ignores_tools,
    named_tool,
    refusal_for,
    streams_nothing,
)
from graphloop.nodes import ModelConfig

__all__ = [
    "NO_ID",
    "TOOLS_IGNORED_TEXT",
    "EmptyStream",
    "RecordedRequest",
    "Refusal",
    "ReplyFn",
    "ScriptedReply",
    "ScriptedServer",
    "ScriptedToolCall",
    "error",
    "hang_up",
    "junk",
    "reply",
    "tool_call",
]

_AUTO = "auto"
NO_ID = "\x00no-id"
"""Pass as a tool call's `id` to send the call with no id at all."""


@dataclass(frozen=True)
class ScriptedToolCall:
    """One tool call in a scripted reply. `arguments` may be a dict or raw (even broken) text."""

    name: str
    arguments: str | Mapping[str, Any] = field(default_factory=dict[str, Any])
    id: str | None = None

    def raw_arguments(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class ScriptedReply:
    """What the server answers to one request.

    `finish_reason` defaults to `"tool_calls"` or `"stop"`; pass None to leave it out (null).
    Streamed, `"length,stop"` sends one finish chunk per reason (servers that repeat it).
    A `status` other than 200 answers with an OpenAI-style error body carrying `error`.
    """

    content: str | None = None
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    finish_reason: str | None = _AUTO
    status: int = 200
    error: str = "scripted error"
    delay: float = 0.0
    """Seconds to wait before answering (to script timeouts)."""
    retry_after: str | None = None
    """`Retry-After` header value for an error reply."""
    stream_index: bool = True
    """False: streamed tool-call deltas carry no `index` (as some local servers send them)."""
    hang_up: bool = False
    """Close the connection without answering (a connection error for the client)."""
    junk: Mapping[str, Any] | str | None = None
    """A 200 body sent as it is, streamed or not (a server answering junk): JSON for a
    mapping, an HTML page for text."""
    cut: bool = False
    """Streamed: the connection closes before the finish chunk and `[DONE]` (a cut-off stream)."""


ReplyFn = Callable[[dict[str, Any]], ScriptedReply]
"""A reply computed from the request body, for scripts that depend on what was sent."""

EmptyStream = Literal["no_chunk", "empty_reply"]
"""What a strict server streams to tools with `tool_choice: "auto"`: see `ScriptedServer`."""


def reply(content: str | None = None, *calls: ScriptedToolCall, finish_reason: str | None = _AUTO,
          delay: float = 0.0, stream_index: bool = True, cut: bool = False) -> ScriptedReply:
    """A 200 reply with text and/or tool calls; `reply()` alone is an empty reply."""
    return ScriptedReply(content=content, tool_calls=calls, finish_reason=finish_reason, delay=delay,
                         stream_index=stream_index, cut=cut)


def tool_call(name: str, arguments: str | Mapping[str, Any] | None = None, *, id: str | None = None,
              **kwargs: Any) -> ScriptedToolCall:
    """A tool call; arguments as a dict, as keywords, or as raw text (to script broken JSON)."""
    return ScriptedToolCall(name=name, arguments=arguments if arguments is not None else kwargs, id=id)


def junk(body: Mapping[str, Any] | str) -> ScriptedReply:
    """A 200 reply whose body is `body` as it is: `junk({"choices": []})` as JSON,
    `junk("<html>…")` as a web page (a proxy's login page)."""
    return ScriptedReply(junk=body)


def error(status: int, message: str = "scripted error", *, retry_after: str | None = None) -> ScriptedReply:
    """An HTTP error reply, e.g. `error(500)`, `error(429, retry_after="2")`."""
    return ScriptedReply(status=status, error=message, retry_after=retry_after)


def hang_up() -> ScriptedReply:
    """Close the connection without an answer."""
    return ScriptedReply(hang_up=True)


class ScriptedServer:
    """Serves scripted chat completions at `<any prefix>/chat/completions` on 127.0.0.1.

    Args:
        replies: The script: one reply (or reply function) per request, in order.
        model: The model name the completions carry.
        strict: Answer like real servers do and refuse what they refuse (rules and the reasons
            in `graphloop.graph.strict`); each case is listed in `refusals`.
        api_key: Require `Authorization: Bearer <api_key>` (else 401), strict or not;
            `model_config()` then sends it. A strict server's 401 echoes the wrong key.
        streams_tools: In strict mode, stream replies to requests with tools as OpenAI does,
            instead of the empty stream llama-cpp-python sends (for tests of streamed tokens).
        empty_stream: In strict mode, what a stream with tools and `tool_choice: "auto"` holds:
            `"no_chunk"` (llama-cpp-python) or `"empty_reply"` (LiteLLM: neither text nor calls).
        system_breaks_tools: In strict mode, answer tools with `"auto"` and a system message by
            naming the first tool as text (`functions.add:`), as llama-cpp-python's
            `chatml-function-calling` format does.
        refuses_tool_choice_none: In strict mode, answer `tool_choice: "none"` with a 400.
        reports_usage: Report each reply's `usage` (in a stream's last chunk when asked with
            `stream_options.include_usage`), as OpenAI does; False for a server that reports
            none. The figures are kept in `usages`.

    Example:
        >>> with ScriptedServer([reply("Hi")], strict=True, api_key="sk-1") as server:
        ...     pass  # run the client against server.model_config(), then read server.refusals
    """

    def __init__(self, replies: Iterable[ScriptedReply | ReplyFn] = (), *, model: str = "scripted",
                 strict: bool = False, api_key: str | None = None, streams_tools: bool = False,
                 empty_stream: EmptyStream = "no_chunk", system_breaks_tools: bool = False,
                 refuses_tool_choice_none: bool = False, reports_usage: bool = True) -> None:
        if empty_stream not in ("no_chunk", "empty_reply"):
            raise ValueError(f"empty_stream={empty_stream!r}: expected 'no_chunk' or 'empty_reply'")
        self.model = model
        self.strict = strict
        self.streams_tools = streams_tools
        self.empty_stream: EmptyStream = empty_stream
        self.system_breaks_tools = system_breaks_tools
        self.refuses_tool_choice_none = refuses_tool_choice_none
        self.reports_usage = reports_usage
        self.usages: list[dict[str, int]] = []
        """The `usage` of each reply, in order (when `reports_usage`): a quarter of the request's
        and of the reply's characters, as a real server reports its own tokenizer's counts."""
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.refusals: list[Refusal] = []
        """Requests refused (an HTTP error) or answered differently than asked (strict mode)."""
        self._replies: list[ScriptedReply | ReplyFn] = list(replies)
        self._used = 0
        self._unexpected: list[int] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = Server(("127.0.0.1", 0), handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # script
    @property
    def root_url(self) -> str:
        """`http://127.0.0.1:PORT`, without a path."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The OpenAI API root to give a client: `http://127.0.0.1:PORT/v1`."""
        return f"{self.root_url}/v1"

    def model_config(self, label: str = "scripted", **overrides: Any) -> ModelConfig:
        """A `ModelConfig` pointing at this server (no retries, so failures show at once)."""
        values: dict[str, Any] = {"label": label, "api_url": self.url, "model_name": self.model,
                                  "api_key": self.api_key or "sk-scripted", "max_retries": 0, **overrides}
        return ModelConfig(**values)

    def add(self, *replies: ScriptedReply | ReplyFn) -> None:
        """Append replies to the script."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def remaining(self) -> int:
        """Scripted replies not used yet."""
        return len(self._replies) - self._used

    def assert_all_used(self) -> None:
        """Fail if a scripted reply was never requested, or a request found no reply."""
        problems: list[str] = []
        if self.remaining:
            problems.append(f"{self.remaining} scripted repl(ies) never requested")
        if self._unexpected:
            problems.append(f"request(s) #{self._unexpected} arrived with no reply left")
        if problems and self.refusals:
            problems.append("refused: " + "; ".join(f"#{r.request} {r.kind} ({r.status}): {r.message}"
                                                    for r in self.refusals))
        if problems:
            raise AssertionError("; ".join(problems))

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            return len(self.requests) - 1

    def _refuse(self, index: int, kind: RefusalKind, status: int, message: str) -> None:
        with self._lock:
            self.refusals.append(Refusal(index, kind, status, message))

    def _rejection(self, request: RecordedRequest) -> Rejection | None:
        """The HTTP error to answer instead of a reply: a missing key, or a strict-mode refusal."""
        if self.api_key is not None and (found := auth_rejection(request.headers, self.api_key, echo=self.strict)):
            return found
        if not self.strict:
            return None
        return refusal_for(request.body, system_breaks_tools=self.system_breaks_tools,
                           refuses_tool_choice_none=self.refuses_tool_choice_none)

    def _unscripted(self, index: int, body: dict[str, Any]) -> ScriptedReply | Literal["no_chunk"] | None:
        """What a strict server answers without using the script (the reply waits for the
        retry): an empty stream, `"no_chunk"` at all or an empty reply, or the first tool named
        as text; None: the script answers."""
        if not self.strict:
            return None
        if not self.streams_tools and streams_nothing(body):
            if self.empty_stream == "no_chunk":
                self._refuse(index, "empty_stream", 200,
                             "streaming with tools and tool_choice 'auto' is not supported: empty stream")
                return "no_chunk"
            self._refuse(index, "empty_reply", 200, "streaming with tools and tool_choice 'auto': an empty reply")
            return reply()
        if self.system_breaks_tools and (named := named_tool(body)) is not None:
            self._refuse(index, "system_breaks_tools", 200, f"tools with a system message: answered {named!r}")
            return reply(named, finish_reason="stop")
        return None

    def _strict_reply(self, index: int, body: dict[str, Any], scripted: ScriptedReply) -> ScriptedReply:
        """The scripted reply as llama-cpp-python would answer: no tool calls without `tool_choice`."""
        if not (self.strict and ignores_tools(body)):
            return scripted
        self._refuse(index, "tools_ignored", 200, "tools sent without tool_choice are ignored")
        if not scripted.tool_calls:
            return scripted
        return dataclasses.replace(scripted, tool_calls=(), finish_reason="stop",
                                   content=scripted.content or TOOLS_IGNORED_TEXT)

    def _next_reply(self, body: dict[str, Any], index: int) -> ScriptedReply | None:
        with self._lock:
            if self._used >= len(self._replies):
                self._unexpected.append(index)
                return None
            item = self._replies[self._used]
            self._used += 1
        return item(body) if callable(item) else item

    def _usage(self, body: dict[str, Any], message: dict[str, Any]) -> dict[str, int]:
        asked = len(json.dumps(body.get("messages", []))) + len(json.dumps(body.get("tools", [])))
        answered = len(message.get("content") or "") + len(json.dumps(message.get("tool_calls", [])))
        usage = {"prompt_tokens": asked // 4, "completion_tokens": answered // 4 + 1}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with self._lock:
            self.usages.append(usage)
        return usage

    def _completion(self, scripted: ScriptedReply, body: dict[str, Any]) -> dict[str, Any]:
        n = next(self._ids)
        calls: list[dict[str, Any]] = []
        for i, c in enumerate(scripted.tool_calls):
            call: dict[str, Any] = {"id": c.id if c.id is not None else f"call_{n}_{i}",
                                    "type": "function",
                                    "function": {"name": c.name, "arguments": c.raw_arguments()}}
            if c.id == NO_ID:
                del call["id"]
            calls.append(call)
        message: dict[str, Any] = {"role": "assistant", "content": scripted.content}
        if calls:
            message["tool_calls"] = calls
        finish = scripted.finish_reason
        if finish == _AUTO:
            finish = "tool_calls" if calls else "stop"
        completion: dict[str, Any] = {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        if self.reports_usage:
            completion["usage"] = self._usage(body, message)
        return completion
