"""`ChatOpenAI`, repaired for what OpenAI-compatible servers really send.

- Tool calls whose arguments are valid JSON but not an object (`[1, 2]`, `5`): langchain-openai
  would fail to build the message at all; they become invalid calls the model is told about.
- Streamed tool-call deltas without an `index` (some local servers): langchain-openai would
  merge them into garbage or drop them; a delta with an id starts a new call, one without
  continues the latest.
- A streamed reply ends with what the stream said as it said it (each call's argument text,
  the finish reason, under `STREAMED`), so a cut-off call is not taken for a whole one.

And one speed-up: the `openai` client walks every request body through its type-driven
transform, in pure Python, before sending it. For chat messages and tool schemas that walk
changes nothing, yet it costs more than everything else in a round once the history is long
(18 ms of a 38 ms round at 50 rounds, see `bench/loop_bench.py`). The messages and tools
langchain-openai built travel in `extra_body`, which the client sends as it is; the body on the
wire is the same.

The seam: these repairs override five private methods of langchain-openai's `ChatOpenAI`
(`SEAM`: `_get_request_payload`, `_create_chat_result`, `_convert_chunk_to_generation_chunk`,
`_stream`, `_astream`). pyproject.toml pins the minor release they were checked against, and at
import `seam_gaps` checks the installed one still has each, with the parameters the override
takes. One that is gone or changed is not overridden: langchain-openai's own method is used, and
one `SeamWarning` names the methods, the installed release and what is lost; runs still work.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple, TypeVar, cast

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, InvalidToolCall
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI

from graphloop.checkpointers import SeamWarning
from graphloop.nodes.calls import CALL_ORDER, STREAMED, arguments_error

__all__ = ["SEAM", "NotAChatCompletion", "RepairedChatOpenAI", "junk_in", "seam_gaps", "untransformed"]

_SENT_AS_BUILT = ("messages", "tools")
"""Request fields already in wire form when langchain-openai hands them to the client."""


def untransformed(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` with its messages and tools moved to `extra_body`, past the client's transform.

    The client merges `extra_body` over the transformed body, its keys winning; the emptied
    fields keep their place, so the JSON sent is unchanged. A Responses API payload (no
    `messages`) is returned as it is.

    Example:
        >>> untransformed({"messages": [{"role": "user", "content": "hi"}], "model": "m"})
        {'messages': [], 'model': 'm', 'extra_body': {'messages': [{'role': 'user', 'content': 'hi'}]}}
    """
    if "messages" not in payload:
        return payload
    built = {key: payload[key] for key in _SENT_AS_BUILT if key in payload}
    extra: dict[str, Any] = {**(payload.get("extra_body") or {}), **built}
    return {**payload, **{key: [] for key in built}, "extra_body": extra}


class NotAChatCompletion(ValueError):
    """A 200 reply that is not a chat completion; the message says what is wrong with it."""


_KINDS: dict[type, str] = {dict: "an object", list: "a list", str: "text", type(None): "null"}


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _is(value: object, *kinds: type) -> bool:
    """`isinstance` without narrowing: JSON from a server is whatever it is."""
    return isinstance(value, kinds)


def _field(value: object, key: str) -> object:
    """`value[key]` of a JSON object, None for anything else."""
    return cast(dict[str, object], value).get(key) if _is(value, dict) else None


def junk_in(body: object) -> str | None:
    """What makes `body` not a chat completion (a proxy's web page, `choices: []`, a null
    message, calls as an object), or None when langchain-openai can read it.

    Example:
        >>> junk_in({"choices": [{"message": None}]})
        'choices[0].message is null'
    """
    if not _is(body, dict):
        return f"the body is not JSON but {str(body)[:80]!r}"
    error = _field(body, "error")
    said = f": {str(error)[:200]!r}" if error else ""
    choices = _field(body, "choices")
    if choices is None:
        return f"it has no choices{said}"
    if not _is(choices, list) or not choices:
        return f"choices is {'empty' if choices == [] else _kind(choices)}{said}"
    message = _field(cast(list[object], choices)[0], "message")
    if not _is(message, dict):
        return f"choices[0].message is {_kind(message)}"
    content = _field(message, "content")
    if not _is(content, str, list, type(None)) or (
            _is(content, list) and not all(_is(part, str, dict) for part in cast(list[object], content))):
        return f"choices[0].message.content is {_kind(content)}, not text"
    if _field(message, "role") not in ("assistant", None):
        return f"choices[0].message.role is {_field(message, 'role')!r}, not 'assistant'"
    calls = _field(message, "tool_calls")
    if not _is(calls, list, type(None)):
        return f"choices[0].message.tool_calls is {_kind(calls)}, not a list"
    for index, call in enumerate(cast(list[object], calls or [])):
        if not _is(_field(_field(call, "function"), "name"), str):
            return f"choices[0].message.tool_calls[{index}] has no function name"
    return None


def _junk_chunk(chunk: object) -> str | None:
    """What makes a streamed chunk unreadable, or None."""
    none: list[object] = []
    nothing: dict[str, object] = {}
    choices = _field(chunk, "choices") or none
    if not _is(choices, list):
        return f"choices is {_kind(choices)}"
    for choice in cast(list[object], choices):
        delta = _field(choice, "delta") or nothing
        if not _is(choice, dict) or not _is(delta, dict):
            return "a choice without a delta object"
        if not _is(_field(delta, "content"), str, type(None)):
            return f"delta.content is {_kind(_field(delta, 'content'))}, not text"
        calls = _field(delta, "tool_calls") or none
        if not _is(calls, list) or not all(
                _is(c, dict) and _is(_field(c, "function") or nothing, dict) for c in cast(list[object], calls)):
            return "delta.tool_calls is not a list of calls"
    return None


def _split_non_object_calls(response: dict[str, Any]) -> list[InvalidToolCall]:
    """Take out tool calls whose arguments are valid JSON but not an object. Arguments sent
    as JSON itself (an object, or null) instead of its text become that text first: what the
    model meant is clear."""
    moved: list[InvalidToolCall] = []
    choices: list[dict[str, Any]] = response.get("choices") or []
    for choice in choices:
        message: dict[str, Any] = choice.get("message") or {}
        calls: list[dict[str, Any]] = message.get("tool_calls") or []
        kept: list[dict[str, Any]] = []
        moved_before = len(moved)
        for call in calls:
            function: dict[str, Any] = call.get("function") or {}
            sent: object = function.get("arguments")
            raw = function["arguments"] = sent if isinstance(sent, str) else "" if sent is None else json.dumps(sent)
            error = arguments_error(raw)
            if error is None or "not valid JSON" in error:  # langchain handles broken JSON
                kept.append(call)
                continue
            moved.append(InvalidToolCall(type="invalid_tool_call", id=call.get("id"),
                                         name=function.get("name"), args=raw, error=error))
        if len(moved) > moved_before:
            message["tool_calls"] = kept or None
    return moved


class _Indexes:
    """Where the tool calls of one streamed completion stand."""

    def __init__(self) -> None:
        self.next = 0
        self.last = 0

    def fill(self, delta: dict[str, Any]) -> None:
        index = delta.get("index")
        if index is None:
            index = self.next if delta.get("id") else self.last
            delta["index"] = index
        self.last = index
        self.next = max(self.next, index + 1)


class _Tally:
    """What a stream said, as it said it: each call's argument text and the finish reason.

    langchain-core repairs partial JSON while merging a stream, so a call cut off mid-arguments
    looks whole (`'{"amount": 10'` becomes `{"amount": 10}`). The text as sent lets
    `graphloop.nodes.calls.whole_calls` check each call strictly once the stream has ended.
    """

    def __init__(self) -> None:
        self.ids: dict[int, str] = {}
        self.arguments: dict[int, str] = {}
        self.finish_reasons: list[str] = []
        self.seen = False

    def see(self, chunk: ChatGenerationChunk) -> None:
        self.seen = True
        if reason := (chunk.generation_info or {}).get("finish_reason"):
            self.finish_reasons.append(str(reason))  # each one: langchain-core glues repeats together
        message = chunk.message
        if not isinstance(message, AIMessageChunk):
            return
        for piece in message.tool_call_chunks:
            index = piece.get("index") or 0
            if piece.get("id"):
                self.ids[index] = str(piece.get("id"))
            self.arguments[index] = self.arguments.get(index, "") + (piece.get("args") or "")

    def ending(self) -> ChatGenerationChunk:
        """An empty last chunk carrying the tally, under `STREAMED` in `response_metadata`."""
        calls = [{"id": self.ids.get(i), "arguments": text} for i, text in sorted(self.arguments.items())]
        record = {"finish_reasons": self.finish_reasons, "calls": calls}
        return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={STREAMED: record}))


def _as_built(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


class _Hook(NamedTuple):
    """One private method of langchain-openai the repairs override."""

    parameters: str | None
    """Its parameters as the override takes them (names and kinds, as `inspect` writes them),
    or None when the override passes on whatever it is given."""
    lost: str
    """What graphloop goes without when langchain-openai's own method is used instead."""


SEAM: dict[str, _Hook] = {
    "_get_request_payload": _Hook(
        "(self, input_, *, stop, **kwargs)",
        "the wire rules learned per server (graphloop.nodes.wire) and the skipped client transform"),
    "_create_chat_result": _Hook(
        "(self, response, generation_info)",
        "junk replies named as such, calls with non-object arguments told to the model, the calls' order"),
    "_convert_chunk_to_generation_chunk": _Hook(
        "(self, chunk, default_chunk_class, base_generation_info)",
        "junk stream chunks named as such, streamed calls without an index kept apart"),
    "_stream": _Hook(None, "cut-off streams (no finish reason) asked again instead of used"),
    "_astream": _Hook(None, "cut-off streams (no finish reason) asked again instead of used"),
}
"""The seam: every private method of langchain-openai's `ChatOpenAI` these repairs override.
pyproject.toml bounds the release they were checked against; `seam_gaps` checks the one
installed, at import."""


def _parameters(method: Callable[..., Any]) -> str:
    """`method`'s parameter names and kinds, without annotations or defaults."""
    bare = [p.replace(annotation=inspect.Parameter.empty, default=inspect.Parameter.empty)
            for p in inspect.signature(method).parameters.values()]
    return str(inspect.Signature(bare))


def seam_gaps(base: type[BaseChatModel]) -> list[str]:
    """The methods of `SEAM` that `base` does not have as the repairs expect: missing, left to
    langchain-core's default, or taking other parameters.

    Example:
        >>> seam_gaps(ChatOpenAI)
        []
    """
    gaps: list[str] = []
    for name, hook in SEAM.items():
        theirs: object = getattr(base, name, None)
        if not callable(theirs) or theirs is getattr(BaseChatModel, name, None) or (
                hook.parameters is not None and _parameters(theirs) != hook.parameters):
            gaps.append(name)
    return gaps


def _seam_warning(base: type[BaseChatModel], gaps: list[str]) -> SeamWarning:
    try:
        release = f"langchain-openai {version('langchain-openai')}"
    except PackageNotFoundError:  # a langchain-openai run from a source tree
        release = "this langchain-openai"
    missing = "; ".join(f"{base.__name__}.{name}{SEAM[name].parameters or ''} (lost: {SEAM[name].lost})"
                        for name in gaps)
    return SeamWarning(
        f"{release} does not have these methods as graphloop's repairs override them, so its own "
        f"are used: {missing}. graphloop was checked against langchain-openai>=1.7.4,<1.8; install "
        "one of those to have the repairs back")


_C = TypeVar("_C", bound=type[BaseChatModel])


def _fitted(cls: _C) -> _C:
    """`cls` without the overrides its base no longer fits (see `SEAM`), warned once: a
    missing or changed method falls back to langchain-openai's own, which still answers."""
    base = cls.__mro__[1]
    if gaps := seam_gaps(base):
        for name in gaps:
            delattr(cls, name)
        warnings.warn(_seam_warning(base, gaps), stacklevel=2)
    return cls


@_fitted
class RepairedChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` with the repairs in this module's docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._streams: OrderedDict[str, _Indexes] = OrderedDict()
        self._shape: Callable[[dict[str, Any]], dict[str, Any]] = _as_built

    def shaped_by(self, shape: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Put every request body through `shape` (`graphloop.nodes.wire.shaped`) first."""
        self._shape = shape

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # untyped dict in langchain-openai's signature
        return untransformed(self._shape(payload))

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        tally = _Tally()
        for chunk in super()._stream(*args, **kwargs):  # pyright: ignore[reportUnknownMemberType]  # untyped in langchain-openai
            tally.see(chunk)
            yield chunk
        if tally.seen:  # an empty stream stays empty: "No generations found in stream"
            yield tally.ending()

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        tally = _Tally()
        async for chunk in super()._astream(*args, **kwargs):  # pyright: ignore[reportUnknownMemberType]  # untyped in langchain-openai
            tally.see(chunk)
            yield chunk
        if tally.seen:
            yield tally.ending()

    def _create_chat_result(
        self, response: dict[str, Any] | openai.BaseModel, generation_info: dict[str, Any] | None = None
    ) -> ChatResult:
        data: object = response.model_dump(warnings=False) if isinstance(response, openai.BaseModel) else response
        if problem := junk_in(data):
            raise NotAChatCompletion(problem)
        assert isinstance(data, dict)
        choices: list[dict[str, Any]] = data.get("choices") or [{}]
        first: dict[str, Any] = choices[0].get("message") or {}
        raw_calls: list[dict[str, Any]] = first.get("tool_calls") or []
        order = [str(c.get("id")) for c in raw_calls]
        moved = _split_non_object_calls(data)
        result = super()._create_chat_result(data, generation_info)  # pyright: ignore[reportUnknownMemberType]  # untyped dict in langchain-openai's signature
        message = result.generations[0].message if result.generations else None
        if isinstance(message, AIMessage):
            message.invalid_tool_calls.extend(moved)
            if order:
                message.response_metadata[CALL_ORDER] = order
        return result

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict[str, Any], default_chunk_class: type, base_generation_info: dict[str, Any] | None
    ) -> ChatGenerationChunk | None:
        if problem := _junk_chunk(chunk):
            raise NotAChatCompletion(f"a streamed chunk is not a completion chunk ({problem}): {str(chunk)[:120]!r}")
        choices = cast(list[dict[str, Any]], chunk.get("choices") or [])
        for choice in choices:
            delta_fields: dict[str, Any] = choice.get("delta") or {}
            deltas: list[dict[str, Any]] = delta_fields.get("tool_calls") or []
            if deltas:
                key = str(chunk.get("id", ""))
                indexes = self._streams.setdefault(key, _Indexes())
                for delta in deltas:
                    indexes.fill(delta)
                while len(self._streams) > 256:
                    self._streams.popitem(last=False)
            if choice.get("finish_reason"):
                self._streams.pop(str(chunk.get("id", "")), None)
        return super()._convert_chunk_to_generation_chunk(  # pyright: ignore[reportUnknownMemberType]  # untyped dict in langchain-openai's signature
            chunk, default_chunk_class, base_generation_info)
