"""Checkpoints and writes kept compressed on graphloop's SQLite savers.

LangGraph's SQLite saver keeps each checkpoint whole in its row: the channels' values, their
versions and the versions each node has seen, about 1 KB of names and numbers that barely change
from one step to the next. zlib with a preset dictionary (a typical checkpoint and messages of
this graph, frozen below) makes each such row about a seventh of that; messages and other
writes compress too. Only graphloop's savers read this form (`COMPRESSED`); a row that would
not shrink by an eighth is kept as LangGraph writes it, and rows written before are read as
they are. PostgreSQL compresses large values itself (TOAST), so its saver is left as it is.

The dictionary is part of the stored format: never change `_DICTIONARY`. A new one needs a new
type tag (and this module reading both).

Example:
    >>> serde = CompressedSerializer()
    >>> kind, data = serde.dumps_typed({"channel_versions": {"messages": "0000000a"}, "note": "x" * 300})
    >>> kind, len(data) < 100, serde.loads_typed((kind, data))["note"] == "x" * 300
    ('msgpack+z1', True, True)
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from graphloop.checkpointers.errors import UnusableDatabaseError

__all__ = ["COMPRESSED", "CompressedSerializer", "expanded"]

COMPRESSED = "msgpack+z1"
"""The type tag of a row compressed with `_DICTIONARY` (LangGraph's own is "msgpack")."""

_SMALLEST = 128
"""Bytes below which a value is kept as it is (the zlib header would eat the gain)."""

_LEVEL = 1
"""zlib's fastest level: on these rows it compresses within a few percent of level 6."""

_DICTIONARY = base64.b64decode(
    "kcfHBZS9bGFuZ2NoYWluX2NvcmUubWVzc2FnZXMuaHVtYW6sSHVtYW5NZXNzYWdlhqdjb250ZW50vVdoYXQgaXMgdGhlIHdl"
    "YXRoZXIgaW4gUGFyaXM/sWFkZGl0aW9uYWxfa3dhcmdzgLFyZXNwb25zZV9tZXRhZGF0YYCkdHlwZaVodW1hbqRuYW1lwKJp"
    "ZNkkMWYxZWRmZGEtMWQzMy02ZWQzLWJmZmYtMjFhMWY1MjI3YjBks21vZGVsX3ZhbGlkYXRlX2pzb26RyAJZBZS6bGFuZ2No"
    "YWluX2NvcmUubWVzc2FnZXMuYWmpQUlNZXNzYWdliadjb250ZW50oLFhZGRpdGlvbmFsX2t3YXJnc4CxcmVzcG9uc2VfbWV0"
    "YWRhdGGIq3Rva2VuX3VzYWdlhbFjb21wbGV0aW9uX3Rva2VucwCtcHJvbXB0X3Rva2VucwCsdG90YWxfdG9rZW5zALljb21w"
    "bGV0aW9uX3Rva2Vuc19kZXRhaWxzwLVwcm9tcHRfdG9rZW5zX2RldGFpbHPArm1vZGVsX3Byb3ZpZGVypm9wZW5haaptb2Rl"
    "bF9uYW1lqHNjcmlwdGVksnN5c3RlbV9maW5nZXJwcmludMCiaWSqY2hhdGNtcGwtMq1maW5pc2hfcmVhc29uqnRvb2xfY2Fs"
    "bHOobG9ncHJvYnPArXRvb2xfY2FsbF9pZHORqGNhbGxfMl8wpHR5cGWiYWmkbmFtZcCiaWTZLmxjX3J1bi0tMDFhMjM0Yjkt"
    "ODNiOC03NzgxLTkxYzEtZWJlZTBkNjVlYjQ2LTCqdG9vbF9jYWxsc5GEpG5hbWWlZmV0Y2ikYXJnc4GjZG9jAaJpZKhjYWxs"
    "XzJfMKR0eXBlqXRvb2xfY2FsbLJpbnZhbGlkX3Rvb2xfY2FsbHOQrnVzYWdlX21ldGFkYXRhhaxpbnB1dF90b2tlbnMArW91"
    "dHB1dF90b2tlbnMArHRvdGFsX3Rva2VucwCzaW5wdXRfdG9rZW5fZGV0YWlsc4C0b3V0cHV0X3Rva2VuX2RldGFpbHOAs21v"
    "ZGVsX3ZhbGlkYXRlX2pzb26Rx/MFlLxsYW5nY2hhaW5fY29yZS5tZXNzYWdlcy50b29sq1Rvb2xNZXNzYWdliadjb250ZW50"
    "slN1bm55LCAyMSBkZWdyZWVzLrFhZGRpdGlvbmFsX2t3YXJnc4CxcmVzcG9uc2VfbWV0YWRhdGGApHR5cGWkdG9vbKRuYW1l"
    "q2dldF93ZWF0aGVyomlk2SQxZjFlZGZkYS0xZDMzLTZlZDMtYmZmZi0yMWExZjUyMjdiMGOsdG9vbF9jYWxsX2lkqGNhbGxf"
    "MV8xqGFydGlmYWN0wKZzdGF0dXOnc3VjY2Vzc7Ntb2RlbF92YWxpZGF0ZV9qc29uh6F2BKJ0c9kgMjAyNi0xMi0wMlQwMzow"
    "ODoyNC45MTEzNDQrMDA6MDCiaWTZJDFmMWVkZmRhLTM2NjktNjQwMC04MTkwLTZhMGJlZjFjNmRlNa5jaGFubmVsX3ZhbHVl"
    "c4imcm91bmRzZKZwb2xpY3mNqXVzZXJfcm9sZaR1c2VyqXRvb2xfbGlzdMCtY29uZmlybV9hbGxvd5CsY29uZmlybV9kZW55"
    "kKptYXhfcm91bmRzzMmycmVzcG9uZF93aXRoX2ZpbmFsw7Rhc2tfbW9kZWxfdG9fY29uZmlybcOndXNlcl9pZMCqcmVtZW1i"
    "ZXJlZICyb25lX2NhbGxfcGVyX3BhdXNlwq1zdGF0ZV92ZXJzaW9uAbFncmFwaGxvb3BfdmVyc2lvbqUwLjMuMKRnYXRlg6V0"
    "b29sc5GlZmV0Y2ilZ2F0ZWSQqWRlY2lzaW9uc4CncGVuZGluZ5CocXVlc3Rpb26gqmNvbXBhY3Rpb26GpmJ1ZGdldM4AFuNg"
    "rXRva2Vuc19iZWZvcmXNbRasdG9rZW5zX2FmdGVyzW0Wp2NsZWFyZWSQp2Ryb3BwZWSQqXNob3J0ZW5lZJCrYW5zd2VyZWRf"
    "YnmlYmVuY2iuX19wcmVnZWxfdGFza3OQsWJyYW5jaDp0bzpjb21wYWN0wLBjaGFubmVsX3ZlcnNpb25zjKlfX3N0YXJ0X1+o"
    "MDAwMDAwMDKobWVzc2FnZXOoMDAwMDAxOTKmcm91bmRzqDAwMDAwMTkwpnBvbGljeagwMDAwMDAwM6dwZW5kaW5nqDAwMDAw"
    "MDAyqHF1ZXN0aW9uqDAwMDAwMDAysWJyYW5jaDp0bzpjb21wYWN0qDAwMDAwMTkyqmNvbXBhY3Rpb26oMDAwMDAxOGa0YnJh"
    "bmNoOnRvOmNhbGxfbW9kZWyoMDAwMDAxOTCrYW5zd2VyZWRfYnmoMDAwMDAxOTC3YnJhbmNoOnRvOmV4ZWN1dGVfdG9vbHOo"
    "MDAwMDAxOTGuX19wcmVnZWxfdGFza3OoMDAwMDAxOTKtdmVyc2lvbnNfc2VlboapX19pbnB1dF9fgKlfX3N0YXJ0X1+BqV9f"
    "c3RhcnRfX6gwMDAwMDAwMadjb21wYWN0gbFicmFuY2g6dG86Y29tcGFjdKgwMDAwMDE4ZapjYWxsX21vZGVsgbRicmFuY2g6"
    "dG86Y2FsbF9tb2RlbKgwMDAwMDE4Zq1leGVjdXRlX3Rvb2xzgbdicmFuY2g6dG86ZXhlY3V0ZV90b29sc6gwMDAwMDE5MKhy"
    "dW5fdG9vbICwdXBkYXRlZF9jaGFubmVsc5KxYnJhbmNoOnRvOmNvbXBhY3SobWVzc2FnZXM="
)
"""A human message, an AI message calling a tool, a tool message and a checkpoint of this graph,
as LangGraph serialises them (2,069 bytes; sha256 461c4a68…, pinned by a test)."""


def expanded(data: bytes) -> bytes:
    """A `COMPRESSED` row's msgpack bytes, as LangGraph would have stored them (to inspect or
    scan a database: `sqlite-utils` shows the compressed form). A damaged row (zlib checks each
    one) raises `UnusableDatabaseError`, never returns wrong data."""
    unpacker = zlib.decompressobj(zdict=_DICTIONARY)
    try:
        return unpacker.decompress(data) + unpacker.flush()
    except zlib.error as exc:
        raise UnusableDatabaseError(
            f"a stored checkpoint row is damaged ({exc}): the database file was changed outside "
            "SQLite, or the disk failed; restore it from a backup, or delete the thread") from None


class CompressedSerializer(JsonPlusSerializer):
    """LangGraph's serializer, whose msgpack rows are zlib-compressed with `_DICTIONARY`.

    A subclass rather than a wrapper, so LangGraph's msgpack allowlist still applies to it.
    """

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        kind, data = super().dumps_typed(obj)
        if kind != "msgpack" or len(data) < _SMALLEST:
            return kind, data
        packer = zlib.compressobj(_LEVEL, zdict=_DICTIONARY)
        packed = packer.compress(data) + packer.flush()
        return (COMPRESSED, packed) if len(packed) <= len(data) - len(data) // 8 else (kind, data)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, raw = data
        if kind != COMPRESSED:
            return super().loads_typed(data)
        return super().loads_typed(("msgpack", expanded(raw)))
