"""The received-JSON check: where the first NUL or over-deep container is, without recursing."""

from __future__ import annotations

import pytest

from fhirsrv.jsonshape import MAX_JSON_DEPTH, JsonShapeError, check_json_shape


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
