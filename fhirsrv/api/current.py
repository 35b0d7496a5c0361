"""The request being answered, its globals and its app, read straight from Flask's contexts.

Why: `flask.request`, `flask.g` and `flask.current_app` are proxies; each attribute read
through one looks the context up again (werkzeug.local, about 0.8 µs). The hooks every request
runs (its clock, its caller, its rate limit, its log line, its headers) and the read by id made
some thirty such reads, a twentieth of an anonymous read's CPU. These return the objects the
proxies stand for, from the context variables Flask keeps them in (`flask.globals`, Flask 2.3
and later); tests/api/test_current.py checks that they are the same objects. Outside a request
they raise LookupError, as the proxies raise RuntimeError: a programming error either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask.globals import _cv_app, _cv_request

if TYPE_CHECKING:
    from flask import Flask, Request
    from flask.ctx import _AppCtxGlobals


def current_request() -> Request:
    """What `flask.request` stands for."""
    return _cv_request.get().request


def request_globals() -> _AppCtxGlobals:
    """What `flask.g` stands for."""
    return _cv_app.get().g


def current_flask_app() -> Flask:
    """What `flask.current_app` stands for."""
    return _cv_app.get().app
