"""The public site's home page, as a visitor's Chromium shows it: it opens, says what it is, and
breaks none of the accessibility rules axe-core checks (WCAG 2.1 A and AA, best practices)."""

from __future__ import annotations

from tests.web.browser import axe_violations, describe_violations, watch


def test_the_home_page_opens_in_a_browser_and_passes_the_accessibility_rules(page, live_demo):
    problems = watch(page)
    response = page.goto(live_demo.url("/"))
    assert response is not None and response.status == 200
    assert "Annuaire" in page.locator(".brand").inner_text()
    assert "soin de support" in page.locator("h1").inner_text()
    assert problems == []
    violations = axe_violations(page)
    assert violations == [], "serious or critical accessibility violations:\n" + describe_violations(violations)
