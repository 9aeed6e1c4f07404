"""Calls a model writes as text: which forms become calls, and which stay text (pure function)."""

from __future__ import annotations

import doctest

import pytest
from langchain_core.messages import AIMessage, ToolCall

from graphloop.nodes import text_calls
from graphloop.nodes.text_calls import TEXT_CALLS, calls_from_text

KNOWN = ["get_weather", "add"]
WEATHER = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def reply(content: str, id: str | None = "r1") -> AIMessage:
    return AIMessage(content=content, id=id)


def weather(index: int = 0, city: str = "Paris") -> ToolCall:
    return ToolCall(name="get_weather", args={"city": city}, id=f"r1-text-{index}", type="tool_call")


def assert_text(content: str) -> None:
    original = reply(content)
    assert calls_from_text(original, KNOWN) is original


def test_bare_object_becomes_a_call() -> None:
    assert calls_from_text(reply(WEATHER), KNOWN).tool_calls == [weather()]


def test_surrounding_whitespace_is_ignored() -> None:
    assert calls_from_text(reply(f"\n  {WEATHER}\n\n"), KNOWN).tool_calls == [weather()]


def test_parameters_key_is_accepted_for_arguments() -> None:
    text = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert calls_from_text(reply(text), KNOWN).tool_calls == [weather()]


def test_arguments_as_a_json_string_holding_an_object_are_accepted() -> None:
    text = '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}'
    assert calls_from_text(reply(text), KNOWN).tool_calls == [weather()]


def test_empty_arguments_object_is_a_call_without_arguments() -> None:
    call = calls_from_text(reply('{"name": "get_weather", "arguments": {}}'), KNOWN).tool_calls[0]
    assert call["args"] == {}


def test_id_and_type_keys_are_ignored() -> None:
    text = '{"id": "call_9", "type": "function", "name": "get_weather", "arguments": {"city": "Paris"}}'
    assert calls_from_text(reply(text), KNOWN).tool_calls == [weather()]


def test_json_fence_becomes_a_call() -> None:
    assert calls_from_text(reply(f"```json\n{WEATHER}\n```"), KNOWN).tool_calls == [weather()]


def test_plain_fence_becomes_a_call() -> None:
    assert calls_from_text(reply(f"```\n{WEATHER}\n```"), KNOWN).tool_calls == [weather()]


def test_tool_call_tags_become_a_call() -> None:
    assert calls_from_text(reply(f"<tool_call>\n{WEATHER}\n</tool_call>"), KNOWN).tool_calls == [weather()]


def test_list_of_calls_becomes_several_calls_in_order() -> None:
    text = f'[{WEATHER}, {{"name": "get_weather", "arguments": {{"city": "Oslo"}}}}]'
    assert calls_from_text(reply(text), KNOWN).tool_calls == [weather(0), weather(1, "Oslo")]


def test_content_is_emptied() -> None:
    assert calls_from_text(reply(WEATHER), KNOWN).content == ""


def test_reply_is_marked_as_read_from_text_and_keeps_its_metadata() -> None:
    original = AIMessage(content=WEATHER, id="r1", response_metadata={"finish_reason": "stop"})
    assert calls_from_text(original, KNOWN).response_metadata == {"finish_reason": "stop", TEXT_CALLS: True}


def test_original_reply_is_not_changed() -> None:
    original = reply(WEATHER)
    calls_from_text(original, KNOWN)
    assert (original.content, original.tool_calls, original.response_metadata) == (WEATHER, [], {})


def test_ids_are_stable_across_calls() -> None:
    first, second = (calls_from_text(reply(WEATHER), KNOWN) for _ in range(2))
    assert first.tool_calls[0]["id"] == second.tool_calls[0]["id"] == "r1-text-0"


def test_reply_without_id_uses_text_as_the_id_prefix() -> None:
    assert calls_from_text(reply(WEATHER, id=None), KNOWN).tool_calls[0]["id"] == "text-text-0"


@pytest.mark.parametrize("content", [
    f"Sure, I will check: {WEATHER}",
    f"{WEATHER}\nLet me know if you need more.",
], ids=["prose-before", "prose-after"])
def test_prose_around_the_object_stays_text(content: str) -> None:
    assert_text(content)


def test_fence_with_extra_text_stays_text() -> None:
    assert_text(f"Calling the tool:\n```json\n{WEATHER}\n```")


def test_tags_with_extra_text_stay_text() -> None:
    assert_text(f"<tool_call>{WEATHER}</tool_call> Done.")


def test_unknown_tool_stays_text() -> None:
    assert_text('{"name": "send_email", "arguments": {"to": "a@b.c"}}')


def test_tool_name_is_matched_exactly_not_fuzzily() -> None:
    assert_text('{"name": "Get_Weather", "arguments": {"city": "Paris"}}')


@pytest.mark.parametrize("arguments", ['["Paris"]', '"Paris"', "5", "null", '"[1, 2]"', '""'])
def test_arguments_that_are_not_an_object_stay_text(arguments: str) -> None:
    assert_text(f'{{"name": "get_weather", "arguments": {arguments}}}')


def test_broken_json_stays_text() -> None:
    assert_text('{"name": "get_weather", "arguments": {"city": "Paris"')


def test_nan_in_arguments_stays_text() -> None:
    assert_text('{"name": "get_weather", "arguments": {"city": NaN}}')


def test_two_objects_stay_text() -> None:
    assert_text(f"{WEATHER}\n{WEATHER}")


def test_two_fenced_objects_stay_text() -> None:
    assert_text(f"```json\n{WEATHER}\n```\n```json\n{WEATHER}\n```")


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}, "reason": "asked"}',
    '{"name": "get_weather", "arguments": {"city": "Paris"}, "parameters": {"city": "Oslo"}}',
    '{"name": "get_weather"}',
    '{"arguments": {"city": "Paris"}}',
    '{"function": {"name": "get_weather", "arguments": "{}"}}',
], ids=["extra-key", "both-argument-keys", "no-arguments", "no-name", "nested-function"])
def test_object_without_exactly_the_call_keys_stays_text(text: str) -> None:
    assert_text(text)


def test_list_with_one_invalid_element_stays_text() -> None:
    assert_text(f'[{WEATHER}, {{"name": "send_email", "arguments": {{}}}}]')


def test_empty_list_stays_text() -> None:
    assert_text("[]")


def test_plain_answer_stays_text() -> None:
    assert_text("It is sunny in Paris.")


def test_reply_that_already_has_calls_is_unchanged() -> None:
    original = AIMessage(content=WEATHER, id="r1", tool_calls=[weather(0, "Oslo")])
    assert calls_from_text(original, KNOWN) is original


def test_reply_with_invalid_calls_is_unchanged() -> None:
    original = AIMessage(content=WEATHER, id="r1",
                         invalid_tool_calls=[{"name": "add", "args": "{", "id": "c1", "error": None,
                                              "type": "invalid_tool_call"}])
    assert calls_from_text(original, KNOWN) is original


def test_reply_with_content_blocks_is_unchanged() -> None:
    original = AIMessage(content=[{"type": "text", "text": WEATHER}], id="r1")
    assert calls_from_text(original, KNOWN) is original


def test_docstring_example_runs() -> None:
    result = doctest.testmod(text_calls)
    assert (result.failed, result.attempted > 0) == (0, True)
