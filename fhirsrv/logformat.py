"""How the server writes its log: one JSON object a line (log collectors) or one text line (a
developer's terminal), and never an exception's message.

Why never the message: a database driver's error quotes the statement and its parameters (a
person's name searched for), a validation error may quote the value it refused. The exception's
type and its stack (files, lines, functions and the code of each line) say where it broke, which
is what an operator needs, and carry no request data. Both formats hold to it, so every logger
of the process (the server's, waitress's, the libraries') is safe once `configure` has run.

Structured fields travel in `extra={"fhirsrv": {...}}` (FIELDS); the request id of the request
being served, when there is one, is added to every line written while it runs (REQUEST_ID).
"""

from __future__ import annotations

import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson

# The id of the request this thread serves (fhirsrv/api/request_log.py sets and resets it).
REQUEST_ID: ContextVar[str | None] = ContextVar("fhirsrv_request_id", default=None)
# The LogRecord attribute holding a line's structured fields.
FIELDS = "fhirsrv"
# Causes and contexts followed from an exception: enough to see where a chain started.
CHAIN_LIMIT = 5

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def exception_summary(exc_info: ExcInfo) -> tuple[str, str]:
    """The exception's qualified type and its stack, causes first as Python prints them, each
    ending with its type alone: no message, no argument, no local variable."""
    chain: list[BaseException] = []
    current: BaseException | None = exc_info[1]
    while current is not None and current not in chain and len(chain) < CHAIN_LIMIT:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for exc in reversed(chain):
        if parts:
            parts.append("\nwhich led to:\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(exc.__traceback__))
        parts.append(_type_name(type(exc)) + "\n")
    return _type_name(exc_info[0]), "".join(parts).rstrip("\n")


def _type_name(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, FIELDS, None) or {})
    request_id = REQUEST_ID.get()
    if request_id is not None:
        fields.setdefault("request_id", request_id)
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "message", the line's fields, "exc_type" and "stack"}."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"], line["stack"] = exception_summary(record.exc_info)  # type: ignore[arg-type]
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message key=value...`, then the stack without the message."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        fields = _fields(record)
        stack = fields.pop("stack", None)
        if fields:
            text += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        if record.exc_info and record.exc_info[0] is not None:
            stack = exception_summary(record.exc_info)[1]  # type: ignore[arg-type]
        return text if stack is None else f"{text}\n{stack}"


def _text_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return "-" if value is None else str(value)


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def configure(log_format: str, level: int | None = None) -> None:
    """Every record of the process to stderr, in `log_format` (FHIRSRV_LOG_FORMAT): the root
    logger's handlers are replaced by one; its level stays as set unless `level` is given."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[log_format]())
    # Neither format writes a record's thread, process or calling line: a record need not look
    # them up (the logging HOWTO's "Optimization"), a saving at every request's line.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level)
