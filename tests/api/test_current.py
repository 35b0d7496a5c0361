"""fhirsrv/api/current.py: the objects Flask's proxies stand for, read from its contexts. If a
Flask release kept them elsewhere, these would fail here rather than the hooks at each request."""

from __future__ import annotations

import pytest
from flask import Flask, current_app, g, request

from fhirsrv.api.current import current_flask_app, current_request, request_globals


def test_each_is_what_the_proxy_stands_for_in_a_request_and_nothing_outside() -> None:
    app = Flask("current")
    with app.test_request_context("/fhir/Organization/a?name=x", headers={"X-Request-ID": "abc"}):
        assert current_request() is request._get_current_object()  # type: ignore[attr-defined]
        assert current_request().args["name"] == "x"
        assert request_globals() is g._get_current_object()  # type: ignore[attr-defined]
        request_globals().fhirsrv_marker = 1
        assert g.fhirsrv_marker == 1
        assert current_flask_app() is current_app._get_current_object() is app  # type: ignore[attr-defined]
    with pytest.raises(LookupError):
        current_request()
    with pytest.raises(LookupError):
        request_globals()
