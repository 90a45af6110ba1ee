"""Text no store can hold is named at the door, and old events read the same way every time."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs import storable
from libs.errors import ValidationFailed

# All of Unicode, lone surrogates included (Python's json module writes them as escapes).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=64)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"name": "a\x00b"}, "$.name"),
        ({"name": "ok", "env": {"KEY": "v\ud800"}}, "$.env.KEY"),
        ({"tags": ["fine", "bad\udfff"]}, "$.tags[1]"),
        ({"env": {"K\x00": "v"}}, "$.env.K\ufffd"),
    ],
    ids=["nul", "nested-surrogate", "list-item", "key"],
)
def test_given_unstorable_text_when_checked_then_the_field_is_named(
    value: object, field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        storable.check(value)
    assert caught.value.details["field"] == field
    assert caught.value.status == 422
    # The refusal quotes no offending character back.
    assert "\x00" not in caught.value.message
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in caught.value.message)


def test_given_bidi_controls_and_emoji_when_checked_then_they_are_stored() -> None:
    storable.check({"name": "\u202eevil\u202c \U0001f600 \u200b", "n": 1, "none": None})


def test_given_a_struct_when_checked_then_its_fields_are_walked() -> None:
    class Body(msgspec.Struct):
        name: str

    with pytest.raises(ValidationFailed) as caught:
        storable.check(Body(name="x\x00"))
    assert caught.value.details["field"] == "$.name"


def test_given_an_escaped_backslash_when_scrubbed_then_nothing_changes() -> None:
    data = json.dumps({"path": "C:\\u0000dir"}).encode()  # a backslash, then "u0000"
    assert storable.scrub_json(data) is data


def test_given_an_event_with_nul_when_scrubbed_then_it_is_replaced() -> None:
    data = json.dumps({"type": "project.created", "name": "a\x00b"}).encode()
    assert json.loads(storable.scrub_json(data)) == {"type": "project.created", "name": "a\ufffdb"}


def test_given_a_lone_surrogate_escape_when_checked_then_its_field_is_named() -> None:
    with pytest.raises(ValidationFailed) as caught:
        storable.check_json(b'{"a": {"b": "x\\ud800"}}')
    assert caught.value.details["field"] == "$.a.b"
    assert "lone surrogate (U+D800)" in caught.value.message
    storable.check_json(b'{"a": ')  # malformed: left to the decoder that follows


@given(st.dictionaries(ANY_TEXT, st.lists(ANY_TEXT, max_size=3), max_size=4))
def test_any_document_scrubs_to_one_that_every_store_holds(value: dict[str, list[str]]) -> None:
    data = json.dumps(value).encode()
    once = storable.scrub_json(data)
    decoded = msgspec.json.decode(once)  # msgspec refuses lone surrogates: none are left
    assert storable.find_unstorable(decoded) is None
    assert storable.scrub_json(data) == once  # deterministic: a replay reads what the live run read
    if storable.find_unstorable(value) is None:
        assert once is data


@given(ANY_TEXT)
def test_check_refuses_exactly_what_scrub_would_change(value: str) -> None:
    changed = storable.scrub(value) != value
    try:
        storable.check({"v": value})
    except ValidationFailed:
        assert changed
    else:
        assert not changed


def test_given_a_document_nested_too_deep_when_checked_then_it_is_refused() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(storable.MAX_DEPTH + 5):
        node["a"] = node = {}
    with pytest.raises(ValidationFailed) as caught:
        storable.check({"configuration": deep})
    assert caught.value.details["field"].startswith("$.configuration.a.a")
    raw = json.dumps({"configuration": deep}).encode()
    with pytest.raises(ValidationFailed):
        storable.check_json(raw)
    # Deeper than Python's json module can even read: still a refusal, not a crash.
    with pytest.raises(ValidationFailed):
        storable.check_json(b'{"a":' * 5000 + b"1" + b"}" * 5000)
    storable.check_json(json.dumps({"a": [[[[{"b": 1}]]]]}).encode())
