"""The strict mode of the scripted server: what real OpenAI-compatible servers refuse or misread.

`ScriptedServer(strict=True)` checks each request against the rules below, observed on
llama-cpp-python's server, Open WebUI and LiteLLM (see `shared/reference/real-servers.md`), so a
client change that would break one of them breaks a test. The permissive default accepts it all.

| request                                                  | strict answer                          |
|----------------------------------------------------------|----------------------------------------|
| a message whose `content` is `null` or left out          | 500 `messages[i].content: ...`         |
| `tool_choice` a string other than auto / none / required | 400 naming it                          |
| a system message with `content: ""`                      | 400 naming it                          |
| `tool_choice: "required"` and a system message           | 500                                    |
| `tools` without `tool_choice`                            | tools ignored: the reply's text only   |
| `stream: true`, `tools` and `tool_choice: "auto"`        | 200 and a stream with no chunk at all  |
| the same, with `empty_stream="empty_reply"`              | 200 and a stream of an empty reply     |
| `system_breaks_tools`: tools, `"auto"`, a system message | 200, text `functions.<tool>:`, "stop"  |
| `tool_choice: "none"`, with `refuses_tool_choice_none`   | 400 naming it                          |

`empty_reply` is LiteLLM's answer to the empty stream (chunks with neither text nor calls);
`system_breaks_tools` is llama-cpp-python's `chatml-function-calling` format, which then names a
tool instead of calling it: `functions.<first tool>:` (an empty system message gets this answer,
not the 400).

`tools_ignored` consumes a scripted reply; the refusals, the empty streams and the named tool do
not (the reply waits for the client's retry). `streams_tools=True` streams with tools as OpenAI
does. A server made with `api_key` also answers 401 to a request without `Authorization: Bearer
<api_key>`, in either mode; a strict one echoes the wrong key in its body, as OpenAI's API once
did (a client must keep it out of its errors).

Example:
    >>> refusal_for({"messages": [{"role": "system", "content": ""}]}).kind
    'empty_system_message'
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast

__all__ = ["TOOLS_IGNORED_TEXT", "Refusal", "RefusalKind", "Rejection", "auth_rejection", "error_body",
           "ignores_tools", "named_tool", "refusal_for", "streams_nothing"]

TOOLS_IGNORED_TEXT = "I cannot call tools."
"""The strict server's answer when it drops a reply's tool calls and the reply has no text."""

RefusalKind = Literal["unauthorized", "content_not_a_string", "unknown_tool_choice", "empty_system_message",
                      "required_with_system", "tools_ignored", "empty_stream", "empty_reply", "system_breaks_tools",
                      "tool_choice_none_refused"]

_TOOL_CHOICES = ("auto", "none", "required")


@dataclass(frozen=True)
class Refusal:
    """One request the server refused or answered differently than asked, and why.

    `status` is the HTTP status sent: 200 for `tools_ignored`, `empty_stream`, `empty_reply`
    and `system_breaks_tools`, which real servers answer without an error.
    """

    request: int
    """Index of the request in `server.requests`."""
    kind: RefusalKind
    status: int
    message: str


class Rejection(NamedTuple):
    """An HTTP error to answer instead of a completion."""

    kind: RefusalKind
    status: int
    message: str
    param: str | None


def auth_rejection(headers: Mapping[str, str], api_key: str, *, echo: bool = False) -> Rejection | None:
    """401 unless the (lower-cased) headers carry `Authorization: Bearer <api_key>`; with `echo`,
    the 401 repeats the wrong key it was sent."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return Rejection("unauthorized", 401, "You didn't provide an API key: send it as "
                         "'Authorization: Bearer <key>'.", None)
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        shown = f": {token.strip()}" if echo else ""
        return Rejection("unauthorized", 401, f"Incorrect API key provided{shown}.", None)
    return None


def refusal_for(body: Mapping[str, Any], *, system_breaks_tools: bool = False,
                refuses_tool_choice_none: bool = False) -> Rejection | None:
    """The HTTP error a real server answers to this chat-completion body, or None (with
    `system_breaks_tools`, an empty system message that `named_tool` answers is no error)."""
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, dict) and choice not in _TOOL_CHOICES:
        return Rejection("unknown_tool_choice", 400, f"Invalid value for 'tool_choice': {choice!r}; "
                         f"expected one of {list(_TOOL_CHOICES)!r} or an object.", "tool_choice")
    if refuses_tool_choice_none and choice == "none":
        return Rejection("tool_choice_none_refused", 400, "tool_choice 'none' is not supported by this "
                         "server", "tool_choice")
    messages = _messages(body)
    named = system_breaks_tools and named_tool(body) is not None
    for i, message in enumerate(messages):
        if message.get("role") == "system" and message.get("content") == "" and not named:
            return Rejection("empty_system_message", 400, f"messages[{i}]: empty system message "
                             "(leave the system message out instead)", f"messages[{i}].content")
    for i, message in enumerate(messages):
        if message.get("content") is None:
            return Rejection("content_not_a_string", 500, _content_error(i, "content" in message),
                             f"messages[{i}].content")
    if choice == "required" and any(m.get("role") == "system" for m in messages):
        return Rejection("required_with_system", 500, "tool_choice 'required' with a system message: "
                         "the chat format fails (as llama-cpp-python's chatml-function-calling)", "tool_choice")
    return None


def ignores_tools(body: Mapping[str, Any]) -> bool:
    """Tools listed without `tool_choice`: llama-cpp-python then never calls one."""
    return bool(body.get("tools")) and body.get("tool_choice") is None


def streams_nothing(body: Mapping[str, Any]) -> bool:
    """Streamed with tools and `tool_choice: "auto"`: llama-cpp-python ends the stream at once."""
    return bool(body.get("stream")) and bool(body.get("tools")) and body.get("tool_choice") == "auto"


def named_tool(body: Mapping[str, Any]) -> str | None:
    """`functions.<first tool>:`, llama-cpp-python's `chatml-function-calling` answer to tools
    with `tool_choice: "auto"` and a system message (even `""`), or None for other bodies."""
    tools: list[Any] = list(body.get("tools") or [])
    if not tools or body.get("tool_choice") != "auto":
        return None
    if not any(m.get("role") == "system" for m in _messages(body)):
        return None
    return f"functions.{tools[0].get('function', {}).get('name', '')}:"


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    kind = "internal_server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw: list[Any] = list(body.get("messages") or [])
    return [cast("Mapping[str, Any]", m) if isinstance(m, Mapping) else {} for m in raw]


def _content_error(index: int, present: bool) -> str:
    if present:  # llama-cpp-python's (and Open WebUI's forwarded) validation error
        return f"messages[{index}].content: Input should be a valid string"
    # LiteLLM drops a null `content`; its backend's chat template then fails on the missing key
    return f"messages[{index}].content: Field required ('dict object' has no attribute 'content')"
