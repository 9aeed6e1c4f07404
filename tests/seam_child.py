"""A process whose langchain-openai has changed two methods graphloop's repairs override.

Both still work for langchain-openai itself but take a new parameter, as a release might make
them. Imports graphloop, runs a round with a tool call against a scripted server (streamed, so
langchain-openai's own chunk conversion reads the replies), and prints what it saw as JSON:
the warnings the import raised, the overrides left, the answer.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import langchain_openai.chat_models.base as lc_openai

_payload = lc_openai.ChatOpenAI._get_request_payload
_chunk = lc_openai.BaseChatOpenAI._convert_chunk_to_generation_chunk


def _get_request_payload(self: Any, input_: Any, *, stop: Any = None, tier: str = "", **kwargs: Any) -> dict[str, Any]:
    return _payload(self, input_, stop=stop, **kwargs)


def _convert_chunk_to_generation_chunk(self: Any, chunk: Any, default_chunk_class: Any,
                                       base_generation_info: Any, logprobs: Any = None) -> Any:
    return _chunk(self, chunk, default_chunk_class, base_generation_info)


setattr(lc_openai.ChatOpenAI, "_get_request_payload", _get_request_payload)  # noqa: B010  # a release that changed it
setattr(lc_openai.BaseChatOpenAI, "_convert_chunk_to_generation_chunk", _convert_chunk_to_generation_chunk)  # noqa: B010

with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    from graphloop.nodes.repairs import SEAM, RepairedChatOpenAI

from langchain_core.messages import HumanMessage  # noqa: E402  # after the recorded import

from graphloop.graph import LoopContext, compile_graph  # noqa: E402
from graphloop.graph.testing import ScriptedServer, reply, tool_call  # noqa: E402


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# permissive: with `_get_request_payload` lost, so are the wire rules (`content: null`), which strict refuses
with ScriptedServer([reply(None, tool_call("add", a=2, b=3)), reply("2 + 3 = 5")]) as server:
    context = LoopContext.create(models=[server.model_config()], tools=[add])
    tokens: list[str] = []
    state: dict[str, Any] = {}
    # streamed as a chat UI streams it: langchain-openai's own chunk conversion reads the reply
    for mode, chunk in compile_graph().stream({"messages": [HumanMessage("add 2 and 3")]}, context=context,
                                              stream_mode=["messages", "values"]):
        if mode == "messages":
            tokens.append(chunk[0].text)
        else:
            state = chunk
    server.assert_all_used()

json.dump({
    "warnings": [{"category": w.category.__name__, "message": str(w.message)} for w in seen],
    "overrides": sorted(name for name in SEAM if name in vars(RepairedChatOpenAI)),
    "answer": state["messages"][-1].text,
    "tool_result": state["messages"][-2].text,
    "streamed": [r.body.get("stream") for r in server.requests],
    "tokens": "".join(tokens),
}, sys.stdout)
