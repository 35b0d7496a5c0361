"""Fixtures of the browser tests: Debian's Chromium through Playwright (`chromium`, `page`,
`phone_page`) and a real server with the demo region (`live_demo`, on each back-end).

Each pytest-xdist worker launches its own browser and builds its own demo sites.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import BACKENDS, PG_URL
from tests.web.browser import BrowserUnavailable, DemoSites, LiveDemo, launched_chromium

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """A headless Chromium (playwright.sync_api.Browser) for the whole session; the tests that
    use it skip, saying what to install, when it cannot be launched."""
    try:
        with launched_chromium() as browser:
            yield browser
    except BrowserUnavailable as missing:
        pytest.skip(str(missing))


def _page(chromium: Any, **options: Any) -> Iterator[Any]:
    context = chromium.new_context(locale="fr-FR", timezone_id="Europe/Paris", **options)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A page of a fresh browser context (no cookies, no cache): a desktop window, French."""
    yield from _page(chromium, viewport=DESKTOP)


@pytest.fixture
def phone_page(chromium: Any) -> Iterator[Any]:
    """A page of a fresh browser context on a phone: narrow screen, touch, French."""
    yield from _page(chromium, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)


@pytest.fixture(scope="session")
def _demo_sites(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[DemoSites]:
    sites = DemoSites(tmp_path_factory.mktemp("web-demo"), PG_URL, worker_id)
    yield sites
    sites.close()


@pytest.fixture(params=BACKENDS)
def live_demo(request: pytest.FixtureRequest, _demo_sites: DemoSites) -> LiveDemo:
    """The demo site on each back-end under test, shared by every test of the session: read it,
    never change it (a test that writes builds its own server)."""
    return _demo_sites.get(request.param)
