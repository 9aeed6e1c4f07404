"""The seam to langchain-openai: the private methods the repairs override are checked at import,
and a release without one falls back to langchain-openai's own with one warning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from graphloop.nodes.repairs import SEAM, RepairedChatOpenAI, seam_gaps

HERE = Path(__file__).parent


def test_the_installed_langchain_openai_fits_every_override() -> None:
    assert seam_gaps(ChatOpenAI) == []
    assert all(name in vars(RepairedChatOpenAI) for name in SEAM)


class _Changed(ChatOpenAI):
    """A langchain-openai release as it might come: a method with another parameter."""

    def _convert_chunk_to_generation_chunk(self, chunk: Any, default_chunk_class: Any,  # type: ignore[override]
                                           base_generation_info: Any, logprobs: Any) -> Any:
        return None


def test_a_method_with_other_parameters_is_a_gap() -> None:
    assert seam_gaps(_Changed) == ["_convert_chunk_to_generation_chunk"]


def test_a_missing_method_and_langchain_cores_default_are_gaps() -> None:
    # langchain-core alone: no payload or result methods, and streaming left to its default
    assert seam_gaps(BaseChatModel) == list(SEAM)


def test_a_changed_release_warns_once_and_a_run_still_works_without_those_repairs() -> None:
    done = subprocess.run([sys.executable, str(HERE / "seam_child.py")], capture_output=True, text=True,
                          timeout=120, check=True)
    seen = json.loads(done.stdout)
    [warning] = seen["warnings"]
    assert warning["category"] == "SeamWarning"
    assert warning["message"].startswith("langchain-openai 1.7.4 does not have these methods as graphloop's")
    assert "ChatOpenAI._get_request_payload(self, input_, *, stop, **kwargs) (lost: the wire rules" in warning["message"]
    assert "_convert_chunk_to_generation_chunk(self, chunk, default_chunk_class, base_generation_info)" in (
        warning["message"])
    assert seen["overrides"] == ["_astream", "_create_chat_result", "_stream"]  # the others are stock
    assert seen["streamed"] == [True, True] and seen["tool_result"] == "5" and seen["answer"] == "2 + 3 = 5"
