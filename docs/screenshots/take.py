"""Takes the README's screenshots of the public directory: the demo region served on loopback
(SQLite in a temporary directory, no map tiles, as in the browser tests) and Debian's Chromium
driven by Playwright.

    .venv/bin/python docs/screenshots/take.py

Writes home.png, results-map.png, structure.png and phone.png beside this file. Needs what the
browser tests need: the `chromium` package (or FHIRSRV_TEST_CHROMIUM) and the test extra.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.web.browser import demo_site, launched_chromium  # noqa: E402

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
RESULTS = "/?categorie=activite-physique-adaptee&commune=Brest+(29200)&distance=20"
STRUCTURE = "/structure/org-29-0004"  # Centre hospitalier de Brest: nine offers at one place
# A département's border drawn inside the map's view (as in tests/web/test_public_directory.py).
OUTLINE_DRAWN = """() => [...document.querySelectorAll("#map .leaflet-overlay-pane svg path")]
    .some(path => path.getAttribute("stroke") !== "none" && path.getBBox().width > 0)"""

SHOTS: list[tuple[str, str, dict[str, int], str | None]] = [
    # file, page, window, what to scroll to the top (None: the top of the page)
    ("home.png", "/", DESKTOP, None),
    ("results-map.png", RESULTS, DESKTOP, None),
    ("structure.png", STRUCTURE, DESKTOP, None),
    ("phone.png", RESULTS, PHONE, "#results-heading"),
]


def take(browser: Any, base: str, name: str, path: str, window: dict[str, int], scroll_to: str | None) -> Path:
    context = browser.new_context(
        viewport=window,
        locale="fr-FR",
        timezone_id="Europe/Paris",
        device_scale_factor=1,
        is_mobile=window is PHONE,
        has_touch=window is PHONE,
        reduced_motion="reduce",
    )
    try:
        page = context.new_page()
        response = page.goto(base + path)
        if response is None or response.status != 200:
            raise SystemExit(f"{path}: {response.status if response else 'no answer'}")
        if page.locator("#map").count():
            page.wait_for_selector('#map[data-ready="1"]')
            page.wait_for_function(OUTLINE_DRAWN)
        if scroll_to:
            page.evaluate("selector => document.querySelector(selector).scrollIntoView()", scroll_to)
        target = HERE / name
        page.screenshot(path=str(target), full_page=False, animations="disabled", caret="hide")
        return target
    finally:
        context.close()


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        demo_site(f"sqlite:///{Path(directory) / 'demo.sqlite3'}", "sqlite") as site,
        launched_chromium() as browser,
    ):
        for name, path, window, scroll_to in SHOTS:
            target = take(browser, site.base, name, path, window, scroll_to)
            print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KB")


if __name__ == "__main__":  # the demo load's worker processes import this file again
    main()
