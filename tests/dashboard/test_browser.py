"""The dashboard in a real browser: `multimodal dashboard` served on 127.0.0.1, driven by Debian's
chromium through playwright (headless). Skipped when chromium is missing, except under CI=true
(`.ci/run` installs it with scripts/browser.sh)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium_or_skip() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {CHROMIUM} is missing; scripts/browser.sh installs it")
    pytest.skip(f"{CHROMIUM} not installed (bash scripts/browser.sh)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run):
    _chromium_or_skip()
    pytest.importorskip("playwright.sync_api")
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("MULTIMODAL_DASHBOARD_PASSWORD", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "multimodal.cli", "dashboard", str(tiny_run), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the dashboard exited: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("the dashboard did not answer within 120 s")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_select_a_patient_and_see_the_curve_and_report(server, tiny_cohort, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    avail = tiny_cohort.availability()
    pid = str(avail.index[avail["report"]][0])
    first_sentence = tiny_cohort.sources["report"].texts()[pid].split("\n")[0][:30]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server, wait_until="domcontentloaded")
            expect(page.get_by_text("Kaplan-Meier by predicted risk group")).to_be_visible(
                timeout=120_000
            )
            page.get_by_test_id("stSidebar").get_by_text("Patient", exact=True).click()
            box = page.get_by_test_id("stSelectbox").first
            expect(box).to_be_visible(timeout=60_000)
            box.click()
            page.keyboard.type(pid)
            page.keyboard.press("Enter")
            expect(page.get_by_text(first_sentence).first).to_be_visible(timeout=120_000)
            curve = page.locator(".js-plotly-plot").first
            expect(curve).to_be_visible(timeout=60_000)
            assert "out-of-fold" in page.locator(".js-plotly-plot").first.inner_text()
            expect(page.get_by_text("Predicted survival", exact=True)).to_be_visible()
            page.wait_for_timeout(500)
            shot = tmp_path / "patient.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
        finally:
            browser.close()
