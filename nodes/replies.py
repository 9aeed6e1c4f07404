"""A tool call's answer as the model reads it, with the exact text kept beside it.

A tool may return text no request can carry: lone surrogates (a file name `os.listdir`
could not decode, e.g. `os.fsdecode(b"caf\\xe9.txt")`) cannot be encoded as UTF-8, and NUL is
refused by PostgreSQL. The model reads each such character as a JSON-style `\\uXXXX` escape
(`caf\\udce9.txt`, `\\u0000`): valid text that names the exact character, and that a model
writing JSON arguments turns back into that character. The exact text stays in the
checkpoint, JSON-encoded (ASCII, so every saver stores it as is) under `EXACT_KEY` in the
message's `additional_kwargs`, which no request carries; `exact_text` reads it back.

Example:
    >>> reply = tool_reply("caf\\udce9.txt", call_id="c1", name="ls", status="success")
    >>> reply.content
    'caf\\\\udce9.txt'
    >>> exact_text(reply) == "caf\\udce9.txt"
    True
"""

from __future__ import annotations

import json
import re
from typing import Literal

from langchain_core.messages import ToolMessage

from graphloop.checkpointers import UNSTORABLE

__all__ = ["EXACT_KEY", "exact_text", "readable", "tool_reply"]

EXACT_KEY = "graphloop_exact"
"""Where a tool message keeps the exact text when the model read an escaped form."""


def readable(text: str, characters: re.Pattern[str] = UNSTORABLE) -> str:
    """`text` with each of `characters` (by default NUL and lone surrogates) as a `\\uXXXX`
    escape: valid text that names the exact character."""
    return characters.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def tool_reply(text: str, *, call_id: str, name: str, status: Literal["success", "error"]) -> ToolMessage:
    """The tool message answering call `call_id` with `text` (exact, whatever its characters)."""
    shown = readable(text)
    kept = {EXACT_KEY: json.dumps(text)} if shown != text else {}
    return ToolMessage(shown, tool_call_id=call_id, name=name, status=status, additional_kwargs=kept)


def exact_text(message: ToolMessage) -> str:
    """The text the tool returned, exactly (the content, unless it had to be escaped)."""
    kept = message.additional_kwargs.get(EXACT_KEY)
    return json.loads(kept) if isinstance(kept, str) else str(message.text)
