"""The log formats of `fhirsrv serve`: JSON lines or text, and an exception's stack without its
message (a driver's error quotes a statement's parameters, a person's name searched for)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from fhirsrv.logformat import FIELDS, REQUEST_ID, JsonFormatter, TextFormatter, exception_summary

SECRET = "Le Bras <y.lebras@example.org>"


def _record(message: str = "something happened", **fields: object) -> logging.LogRecord:
    try:
        try:
            raise KeyError(SECRET)
        except KeyError as inner:
            raise RuntimeError(f"while handling {SECRET}") from inner
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("fhirsrv.test", logging.ERROR, __file__, 1, message, (), exc_info)
    setattr(record, FIELDS, fields)
    return record


def test_the_stack_of_a_chain_has_each_type_and_no_message():
    record = _record()
    assert record.exc_info is not None
    exc_type, stack = exception_summary(record.exc_info)  # type: ignore[arg-type]
    assert exc_type == "RuntimeError"
    assert stack.index("KeyError") < stack.index("which led to") < stack.rindex("RuntimeError")
    assert "in _record" in stack and SECRET not in stack and "y.lebras" not in stack


def test_a_json_line_with_fields_request_id_and_a_safe_stack():
    token = REQUEST_ID.set("req-42")
    try:
        line = json.loads(JsonFormatter().format(_record(status=500, interaction="read")))
    finally:
        REQUEST_ID.reset(token)
    assert line["message"] == "something happened" and line["level"] == "error"
    assert (line["status"], line["interaction"], line["request_id"]) == (500, "read", "req-42")
    assert line["exc_type"] == "RuntimeError" and line["ts"].endswith("Z")
    assert SECRET not in json.dumps(line) and "y.lebras" not in json.dumps(line)


def test_a_text_line_with_fields_and_a_safe_stack():
    text = TextFormatter().format(_record(status=404, params=["name", "_count"]))
    first, *stack = text.splitlines()
    assert first.endswith("ERROR fhirsrv.test something happened status=404 params=name,_count")
    assert stack and stack[-1] == "RuntimeError"
    assert SECRET not in text and "y.lebras" not in text


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_a_record_without_an_exception_has_no_stack(formatter: logging.Formatter):
    record = logging.LogRecord("fhirsrv", logging.INFO, __file__, 1, "loaded %s files", (6,), None)
    text = formatter.format(record)
    assert "loaded 6 files" in text and "Traceback" not in text and "request_id" not in text
