"""Real-browser testing of the public web directory: Debian's Chromium driven by Playwright, a
real server with the demo region, and axe-core's accessibility rules.

Playwright's own browser download cannot be used on the project's machines (they reach package
registries only): the browser is the `chromium` Debian package (.ci/run installs it), launched
through Playwright's `executable_path`. Without it, or without the `playwright` package, the
browser tests skip and say what to install.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from flask import Flask

from fhirsrv.app import create_app
from fhirsrv.interactions.load import load_initial_content
from fhirsrv.settings import Settings
from fhirsrv.wiring import build_services
from tests.live_server import serving
from tests.worker_processes import postgres_database

CHROMIUM_VARIABLE = "FHIRSRV_TEST_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
AXE_SCRIPT = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
# The rule sets every page is held to: WCAG 2.1 A and AA, and axe's best practices.
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice")
# Safety limit for one anonymous request of `LiveDemo.get` (not a timing assertion).
REQUEST_TIMEOUT = 60.0


def chromium_path() -> str:
    return os.environ.get(CHROMIUM_VARIABLE) or DEFAULT_CHROMIUM


def launch_arguments() -> list[str]:
    # Chromium's sandbox refuses to start as root (the project's machines and CI run as root).
    # /dev/shm is small in many containers: Chromium then crashes on big pages without the flag.
    arguments = ["--disable-dev-shm-usage"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        arguments.append("--no-sandbox")
    return arguments


def unavailable(reason: str) -> str:
    """The skip message of the browser tests: what is missing and what to install."""
    return (
        f"browser tests need Chromium and Playwright: {reason}. Install Debian's browser "
        f"(`apt-get install chromium`, as .ci/run does) and the test extra (`pip install -e '.[test]'`, "
        f"which brings playwright; never `playwright install`), or point {CHROMIUM_VARIABLE} at a Chromium"
    )


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """A headless Chromium (playwright.sync_api.Browser) until the block ends. Raises
    BrowserUnavailable when it cannot be had, with the message to skip with."""
    executable = chromium_path()
    if not Path(executable).is_file() or not os.access(executable, os.X_OK):
        raise BrowserUnavailable(unavailable(f"no executable Chromium at {executable}"))
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        raise BrowserUnavailable(unavailable(f"the playwright package is missing ({error})")) from error
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=launch_arguments()
            )
        except Error as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise BrowserUnavailable(
                unavailable(f"Playwright could not launch {executable}: {first_line}")
            ) from error
        try:
            yield browser
        finally:
            browser.close()


class BrowserUnavailable(Exception):
    """No Chromium could be launched; the message says what to install."""


# The demo site.


@dataclass
class LiveDemo:
    """A real HTTP server (waitress, in this process) with the demo region loaded.

    `base` is the site's root ("http://127.0.0.1:PORT"), the FHIR API is under `base + "/fhir"`.
    Authorization is on, as in a deployment: what the site shows is what an anonymous visitor
    may see."""

    base: str
    backend: str
    app: Flask
    settings: Settings = field(repr=False)

    def url(self, path: str) -> str:
        """The absolute URL of a site path ("/", "/structures?q=douleur")."""
        return urllib.parse.urljoin(self.base + "/", path.lstrip("/"))

    def get(self, path: str, accept: str = "text/html") -> Answer:
        """An anonymous GET of a site path, whatever its status (no exception for 4xx/5xx)."""
        request = urllib.request.Request(self.url(path), headers={"Accept": accept})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), error.read())

    def fhir(self, path: str) -> dict[str, Any]:
        """An anonymous FHIR read or search, relative to the FHIR base ("HealthcareService?_count=5",
        "/Organization/x"): the JSON it answers. A status other than 200 fails the test."""
        answer = self.get("/fhir/" + path.lstrip("/"), accept="application/fhir+json")
        assert answer.status == 200, f"GET /fhir/{path.lstrip('/')}: {answer.status} {answer.text()[:500]}"
        return answer.json()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def demo_settings(database_url: str) -> Settings:
    """The demo site's settings: a deployment's (authorization on), with the demo region.

    The anonymous rate limit is off: every page, style sheet, script and image of every test
    comes from one address, 127.0.0.1 (tests/auth covers the limit itself). No map tiles: the
    machine that runs the tests may have no internet, and the map must then still show its
    markers over the départements' outlines (FHIRSRV_WEB_TILE_URL empty)."""
    return Settings.from_env(database_url=database_url, load_demo=True, rate_limit_anonymous=0, web_tile_url="")


@contextmanager
def demo_site(database_url: str, backend: str) -> Iterator[LiveDemo]:
    """The first start of `fhirsrv serve` on an empty database (the shipped conformance and
    terminology content, then the demo region), then the app served on a free loopback port."""
    settings = demo_settings(database_url)
    services = build_services(settings)
    try:
        load_initial_content(services, demo=True)
        app = create_app(settings, services)
        with serving(app, threads=8) as fhir_base:
            yield LiveDemo(fhir_base.removesuffix("/fhir"), backend, app, settings)
    finally:
        services.engine.dispose()


class DemoSites:
    """One demo site per back-end, built the first time a test asks for it and kept until the
    end of the session (the load costs seconds: about 6 on SQLite, 9 on PostgreSQL). Each
    pytest-xdist worker has its own."""

    def __init__(self, directory: Path, postgres_url: str, worker: str) -> None:
        self.directory = directory
        self.postgres_url = postgres_url
        self.worker = worker
        self.sites: dict[str, LiveDemo] = {}
        self.stack = ExitStack()

    def get(self, backend: str) -> LiveDemo:
        if backend not in self.sites:
            if backend == "postgres":
                # The pid keeps concurrent runs on one server (developers, CI) apart.
                schema = f"fhirsrv_test_web_{self.worker}_{os.getpid()}"
                url = self.stack.enter_context(postgres_database(self.postgres_url, schema))
            else:
                url = f"sqlite:///{self.directory / 'demo.sqlite3'}"
            self.sites[backend] = self.stack.enter_context(demo_site(url, backend))
        return self.sites[backend]

    def close(self) -> None:
        self.stack.close()


# What went wrong in the page.


def watch(page: Any) -> list[str]:
    """From now on, what a visitor's browser would report as broken on `page`: uncaught script
    errors, console errors (a style or script the Content-Security-Policy refused included),
    requests that failed and answers of status 400 or more. Returns the list it fills.

    A request the browser itself cancels because the visitor moved on (net::ERR_ABORTED: the
    map's outlines still loading when a link is followed) is not a fault of the page."""
    problems: list[str] = []

    def failed(request: Any) -> None:
        if request.failure != "net::ERR_ABORTED":
            problems.append(f"request failed: {request.url} ({request.failure})")

    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: problems.append(f"console error: {message.text}") if message.type == "error" else None,
    )
    page.on("requestfailed", failed)
    page.on(
        "response",
        lambda response: problems.append(f"HTTP {response.status}: {response.url}")
        if response.status >= 400
        else None,
    )
    return problems


# Accessibility.


@cache
def _axe_source() -> str:
    return AXE_SCRIPT.read_text(encoding="utf-8")


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's violations of WCAG 2.1 A/AA and its best practices on the page as it is now,
    those of the given impacts ("minor", "moderate", "serious", "critical").

    axe is evaluated through the DevTools protocol rather than added as a <script>: the site's
    Content-Security-Policy rightly refuses inline scripts, and the page is tested with it on."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(_axe_source())
    results = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", list(AXE_TAGS)
    )
    return [v for v in results["violations"] if v.get("impact") in impacts]


def describe_violations(violations: list[dict[str, Any]]) -> str:
    """A readable list of axe violations: rule, impact, help, and each node's selector and HTML."""
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} — {violation['helpUrl']}")
        for node in violation["nodes"]:
            lines.append(f"    {' '.join(map(str, node['target']))}: {node['html'][:200]}")
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            if summary:
                lines.append(f"        {summary[:300]}")
    return "\n".join(lines)
