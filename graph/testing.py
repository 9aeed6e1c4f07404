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
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from graphloop.graph.strict import (
    TOOLS_IGNORED_TEXT,
    Refusal,
    RefusalKind,
    Rejection,
    auth_rejection,
    error_body,
    ignores_tools,
    refusal_for,
    streams_nothing,
)
from graphloop.nodes import ModelConfig

__all__ = [
    "NO_ID",
    "TOOLS_IGNORED_TEXT",
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


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    """Header names in lower case."""

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.body.get("tools", [])]


class ScriptedServer:
    """Serves scripted chat completions at `<any prefix>/chat/completions` on 127.0.0.1.

    Args:
        replies: The script: one reply (or reply function) per request, in order.
        model: The model name the completions carry.
        strict: Answer like real servers do and refuse what they refuse (rules and the reasons
            in `graphloop.graph.strict`); each case is listed in `refusals`.
        api_key: Require `Authorization: Bearer <api_key>` (else 401), strict or not;
            `model_config()` then sends it.
        streams_tools: In strict mode, stream replies to requests with tools as OpenAI does,
            instead of the empty stream llama-cpp-python sends (for tests of streamed tokens).

    Example:
        >>> with ScriptedServer([reply("Hi")], strict=True, api_key="sk-1") as server:
        ...     ...  # run the client against server.model_config(), then read server.refusals
    """

    def __init__(self, replies: Iterable[ScriptedReply | ReplyFn] = (), *, model: str = "scripted",
                 strict: bool = False, api_key: str | None = None, streams_tools: bool = False) -> None:
        self.model = model
        self.strict = strict
        self.streams_tools = streams_tools
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.refusals: list[Refusal] = []
        """Requests refused (an HTTP error) or answered differently than asked (strict mode)."""
        self._replies: list[ScriptedReply | ReplyFn] = list(replies)
        self._used = 0
        self._unexpected: list[int] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
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
        if self.api_key is not None and (found := auth_rejection(request.headers, self.api_key)):
            return found
        return refusal_for(request.body) if self.strict else None

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

    def _completion(self, scripted: ScriptedReply) -> dict[str, Any]:
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
        return {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }


def _chunks(completion: dict[str, Any], with_index: bool = True) -> Iterator[dict[str, Any]]:
    """The SSE chunks of `completion`: role, text pieces, tool-call pieces, finish."""
    choice = completion["choices"][0]
    message = choice["message"]
    base = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    text = message.get("content") or ""
    for start in range(0, len(text), 8):
        yield chunk({"content": text[start:start + 8]})
    for index, call in enumerate(message.get("tool_calls", [])):
        fn = call["function"]
        at = {"index": index} if with_index else {}
        yield chunk({"tool_calls": [at | {"id": call.get("id", ""), "type": "function",
                                          "function": {"name": fn["name"], "arguments": ""}}]})
        args = fn["arguments"]
        for start in range(0, len(args), 16):
            yield chunk({"tool_calls": [at | {"function": {"arguments": args[start:start + 16]}}]})
    yield chunk({}, choice["finish_reason"])


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # hundreds of clients connect at once in the concurrency tests


def _handler_for(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body go out in separate writes: without this, Nagle's algorithm and
            # the client's delayed ACK add ~40 ms to every reply
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send_json(self, status: int, payload: dict[str, Any],
                       headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            request = RecordedRequest(self.path, body, {k.lower(): v for k, v in self.headers.items()})
            index = server._record(request)  # pyright: ignore[reportPrivateUsage]
            if rejection := server._rejection(request):  # pyright: ignore[reportPrivateUsage]
                server._refuse(index, rejection.kind, rejection.status, rejection.message)  # pyright: ignore[reportPrivateUsage]
                code = "invalid_api_key" if rejection.status == 401 else None
                self._send_json(rejection.status, error_body(rejection.status, rejection.message,
                                                             param=rejection.param, code=code))
                return
            if server.strict and not server.streams_tools and streams_nothing(body):
                server._refuse(index, "empty_stream", 200,  # pyright: ignore[reportPrivateUsage]
                               "streaming with tools and tool_choice 'auto' is not supported: empty stream")
                self._start_stream()  # and nothing more; the scripted reply waits for the retry
                return
            scripted = server._next_reply(body, index)  # pyright: ignore[reportPrivateUsage]
            if scripted is None:
                self._send_json(500, {"error": {"message": "scripted server: no reply left",
                                                "type": "server_error"}})
                return
            if scripted.delay:
                time.sleep(scripted.delay)
            if not self._answer_abnormally(scripted):
                self._answer(index, body, server._strict_reply(index, body, scripted))  # pyright: ignore[reportPrivateUsage]

        def _answer_abnormally(self, scripted: ScriptedReply) -> bool:
            """Hang up, send junk or an HTTP error if so scripted; False if none applies."""
            if scripted.hang_up:
                self.close_connection = True
                self.connection.close()
            elif isinstance(scripted.junk, str):
                page = scripted.junk.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
            elif scripted.junk is not None:
                self._send_json(200, dict(scripted.junk))
            elif scripted.status != 200:
                headers = {"Retry-After": scripted.retry_after} if scripted.retry_after else {}
                self._send_json(scripted.status, {"error": {
                    "message": scripted.error, "type": "invalid_request_error",
                    "code": scripted.error if scripted.status == 400 else None}}, headers)
            else:
                return False
            return True

        def _answer(self, index: int, body: dict[str, Any], scripted: ScriptedReply) -> None:
            completion = server._completion(scripted)  # pyright: ignore[reportPrivateUsage]
            options: dict[str, Any] = body.get("stream_options") or {}
            if body.get("stream"):
                self._stream(completion, bool(options.get("include_usage")), scripted)
            else:
                self._send_json(200, completion)

        def _start_stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _stream(self, completion: dict[str, Any], usage: bool, scripted: ScriptedReply) -> None:
            self._start_stream()
            events = list(_chunks(completion, scripted.stream_index))
            if scripted.cut:  # the connection closes: no finish chunk, no usage, no [DONE]
                for event in events[:-1]:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                self.close_connection = True
                return
            if usage:
                events.append({k: completion[k] for k in ("id", "created", "model")}
                              | {"object": "chat.completion.chunk", "choices": [],
                                 "usage": completion["usage"]})
            for event in events:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler
