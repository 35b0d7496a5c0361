"""The received-JSON check: where the first control character or over-deep container is, without recursing."""

from __future__ import annotations

import pytest

from fhirsrv.jsonshape import MAX_JSON_DEPTH, JsonShapeError, check_json_shape, may_hold_control_characters


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_nesting_up_to_the_limit_passes_and_one_more_level_is_refused() -> None:
    check_json_shape(_nested(MAX_JSON_DEPTH))
    with pytest.raises(JsonShapeError, match=f"more than {MAX_JSON_DEPTH} levels"):
        check_json_shape(_nested(MAX_JSON_DEPTH + 1))


def test_a_nesting_far_deeper_than_python_recursion_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(JsonShapeError):
        check_json_shape(_nested(200_000))


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"name": [{"given": ["Anne", "A\x00"]}]}, "name[0].given[1]"),
        ({"extension": [{"url\x00": "x"}]}, "extension[0].url\\u0000"),
        ("\x00", ""),
    ],
)
def test_the_first_nul_is_located(value: object, path: str) -> None:
    with pytest.raises(JsonShapeError, match="NUL") as refused:
        check_json_shape(value)
    assert refused.value.path == path


def test_strings_are_skipped_when_the_caller_knows_there_is_no_nul() -> None:
    check_json_shape({"name": "a\x00"}, strings=False)


@pytest.mark.parametrize("char", ["\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f"])
def test_every_control_character_but_tab_and_line_breaks_is_refused_by_its_code_point(char: str) -> None:
    with pytest.raises(JsonShapeError, match=f"U\\+{ord(char):04X}") as refused:
        check_json_shape({"name": [{"text": f"Anne{char}"}]})
    assert refused.value.path == "name[0].text"


def test_a_control_character_in_a_property_name_is_shown_as_its_json_escape() -> None:
    with pytest.raises(JsonShapeError, match="property name") as refused:
        check_json_shape({"extension": [{"url\x1b": "x"}]})
    assert refused.value.path == "extension[0].url\\u001b"


def test_tab_line_breaks_and_non_ascii_separators_are_text() -> None:
    check_json_shape({"description": "Ateliers :\n\t- yoga\r\n- sophrologie\u00a0!\u2028fin"})


@pytest.mark.parametrize(
    ("body", "walk"),
    [
        (b'{"name": "a\\u0001"}', True),
        (b'{"name": "a\\b"}', True),
        (b'{"name": "a\\f"}', True),
        (b'{"name": "caf\\u00e9 \\n \\t"}', False),
        (b'{"name": "plain"}', False),
    ],
)
def test_only_a_body_with_an_escaped_control_character_needs_its_strings_walked(body: bytes, walk: bool) -> None:
    assert may_hold_control_characters(body) is walk
