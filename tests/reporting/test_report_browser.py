"""The run report in a real browser: Debian's chromium through playwright (headless), opened
from the file system with nothing else reachable. Skipped when chromium is missing, except under
CI=true (`.ci/run` installs it with scripts/browser.sh)."""

from __future__ import annotations

import pytest

from tests._browser import CHROMIUM, CHROMIUM_ARGS
from tests._browser import chromium_or_skip as _chromium_or_skip

pytestmark = pytest.mark.browser


def test_report_opens_without_errors_or_requests(report_html, tmp_path):
    _chromium_or_skip()
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report_html.as_uri(), wait_until="load")
            expect(page.locator("h1")).to_contain_text("Model card")
            expect(page.locator("#risk-groups h2")).to_contain_text("Kaplan-Meier")
            expect(page.locator("#robustness")).to_be_visible()
            # every figure decoded (a broken data URI has naturalWidth 0)
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert len(widths) >= 3 and all(w > 100 for w in widths), widths
            if page.locator("#robustness details summary").count():
                page.locator("#robustness details summary").first.click()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000
        finally:
            browser.close()
    assert not errors, f"browser errors: {errors}"
    outside = [u for u in requests if not u.startswith(("file:", "data:"))]
    assert not outside, f"the page asked for {outside}"
