"""The HTTP side of `graphloop.graph.testing.ScriptedServer`: requests in, JSON or SSE out."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from graphloop.graph.strict import error_body

ScriptedServer = Any
"""`graphloop.graph.testing.ScriptedServer` (which imports this module)."""
ScriptedReply = Any
"""`graphloop.graph.testing.ScriptedReply`."""

__all__ = ["RecordedRequest", "Server", "handler_for"]


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
    finish: str | None = choice["finish_reason"]
    for reason in (finish or "").split(",") if finish else [None]:  # "length,stop": one chunk each
        yield chunk({}, reason)


class Server(ThreadingHTTPServer):
    request_queue_size = 1024  # hundreds of clients connect at once in the concurrency tests


def handler_for(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
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
            if (instead := server._unscripted(index, body)) is not None:  # pyright: ignore[reportPrivateUsage]
                if instead == "no_chunk":
                    self._start_stream()  # and nothing more; the scripted reply waits for the retry
                else:
                    self._answer(index, body, instead)
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
            completion = server._completion(scripted, body)  # pyright: ignore[reportPrivateUsage]
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
            if usage and "usage" in completion:
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
