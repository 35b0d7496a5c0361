"""An app whose database holds the shipped terminology, with no cached expansion or code list
left over from another test's database."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.interactions.context import Services
from fhirsrv.interactions.load import load_paths
from fhirsrv.terminology import valueset
from fhirsrv.validation import codes


@pytest.fixture
def services(app: Flask) -> Services:
    services = app.extensions["fhirsrv"]
    load_paths(services, [services.settings.terminology_dir])
    valueset.clear_cache()
    codes.clear_cache()
    return services


@pytest.fixture
def client(app: Flask, services: Services) -> FlaskClient:
    return app.test_client()
