"""Token estimates for the context budget.

Parity with the original loop: characters of the JSON-encoded messages divided by four, plus a
fixed allowance for the tool schemas.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from langchain_core.messages import BaseMessage, convert_to_openai_messages

__all__ = ["CHARS_PER_TOKEN", "TOOL_SCHEMA_OVERHEAD", "estimate_tokens"]

CHARS_PER_TOKEN = 4
TOOL_SCHEMA_OVERHEAD = 3_000


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """Estimated prompt tokens for `messages` as sent in OpenAI format, tool schemas included."""
    dicts = convert_to_openai_messages(list(messages))
    chars = sum(len(json.dumps(d, ensure_ascii=False)) for d in dicts)
    return chars // CHARS_PER_TOKEN + TOOL_SCHEMA_OVERHEAD
