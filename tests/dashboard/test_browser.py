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

import pytest

from tests._browser import CHROMIUM, CHROMIUM_ARGS
from tests._browser import chromium_or_skip as _chromium_or_skip

pytestmark = pytest.mark.browser


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


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _open(browser, server, view: str | None = None):
    """A page on the dashboard, the cohort view rendered, then ``view`` chosen in the sidebar."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, wait_until="domcontentloaded")
    expect(page.get_by_text("Kaplan-Meier by predicted risk group")).to_be_visible(timeout=120_000)
    if view is not None:
        page.get_by_test_id("stSidebar").get_by_text(view, exact=True).click()
    return page


def _no_exception(page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stException")).to_have_count(0)


def _choose_patient(page, pid: str) -> None:
    from playwright.sync_api import expect

    box = page.get_by_test_id("stSelectbox").first
    expect(box).to_be_visible(timeout=60_000)
    box.click()
    page.keyboard.type(pid)
    page.keyboard.press("Enter")


def test_cohort_view_has_units_numbers_at_risk_and_one_c_index(server, browser):
    from playwright.sync_api import expect

    page = _open(browser, server)
    try:
        expect(page.get_by_text("Calibration at 1 year (12 months)")).to_be_visible(timeout=120_000)
        # Plotly gives a chart its class only once drawn, so the calibration chart may be in the
        # page before the KM one: wait for the chart with the numbers at risk, then read it.
        km = page.locator(".js-plotly-plot").filter(has_text="Number at risk")
        expect(km).to_have_count(1, timeout=120_000)
        expect(km).to_contain_text("time (months)")
        follow_up = page.get_by_test_id("stMetric").filter(has_text="median follow-up")
        expect(follow_up).to_contain_text("months")
        expect(page.get_by_test_id("stSidebar")).to_contain_text("mean of 2 folds")
        expect(page.get_by_text("not pooled", exact=False).first).to_be_visible()
        _no_exception(page)
    finally:
        page.close()


def test_select_a_patient_and_see_the_curve_and_report(server, browser, tiny_cohort, tmp_path):
    from playwright.sync_api import expect

    avail = tiny_cohort.availability()
    pid = str(avail.index[avail["report"]][0])
    first_sentence = tiny_cohort.sources["report"].texts()[pid].split("\n")[0][:30]
    page = _open(browser, server, "Patient")
    try:
        _choose_patient(page, pid)
        expect(page.get_by_text(first_sentence).first).to_be_visible(timeout=120_000)
        curve = page.locator(".js-plotly-plot").filter(has_text="out-of-fold").first
        expect(curve).to_be_visible(timeout=120_000)
        expect(curve).to_contain_text("Number at risk")  # under the similar patients' KM
        expect(page.get_by_text("Predicted survival", exact=True)).to_be_visible()
        for label in ("event probability by 1 year", "hazard ratio vs median patient"):
            expect(page.get_by_test_id("stMetric").filter(has_text=label)).to_have_count(1)
        expect(page.locator(".shading-legend")).to_contain_text(
            "raises the 3-year event probability"
        )
        _no_exception(page)
        page.wait_for_timeout(500)
        shot = tmp_path / "patient.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
    finally:
        page.close()


def test_full_explanation_renders(server, browser, tiny_cohort):
    from playwright.sync_api import expect

    avail = tiny_cohort.availability()
    pid = str(avail.index[avail.all(axis=1)][2])
    page = _open(browser, server, "Patient")
    try:
        _choose_patient(page, pid)
        button = page.get_by_role(
            "button", name="Run the full explanation for this patient (slower)"
        )
        expect(button).to_be_visible(timeout=120_000)
        button.click()
        expect(page.get_by_text("Attributions from the explain step").first).to_be_visible(
            timeout=180_000
        )
        expect(page.get_by_text("Modality contributions").first).to_be_visible()
        _no_exception(page)
    finally:
        page.close()


def test_compare_view(server, browser):
    from playwright.sync_api import expect

    page = _open(browser, server, "Compare")
    try:
        expect(page.get_by_text("Compare patients")).to_be_visible(timeout=60_000)
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=120_000)
        expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
        _no_exception(page)
    finally:
        page.close()


def _new_patient(browser, server):
    from playwright.sync_api import expect

    page = _open(browser, server, "New patient")
    expect(page.get_by_text("Clinical covariates")).to_be_visible(timeout=120_000)
    return page


@pytest.mark.parametrize("age", ["500", "-5"])
def test_new_patient_refuses_implausible_age(server, browser, age):
    from playwright.sync_api import expect

    page = _new_patient(browser, server)
    try:
        page.get_by_label("age (years)", exact=True).fill(age)
        page.get_by_role("button", name="Predict").click()
        alert = page.get_by_test_id("stAlert").filter(has_text="Not predicted")
        expect(alert).to_be_visible(timeout=120_000)
        expect(alert).to_contain_text(f"age = {age} years is refused")
        expect(page.get_by_test_id("stMetric")).to_have_count(0)  # no prediction
        expect(page.locator(".js-plotly-plot")).to_have_count(0)
        _no_exception(page)
    finally:
        page.close()


def test_new_patient_empty_report_is_not_used(server, browser):
    from playwright.sync_api import expect

    page = _new_patient(browser, server)
    try:
        page.get_by_label("age (years)", exact=True).fill("60")
        page.get_by_role("button", name="Predict").click()
        expect(page.get_by_text("Rests on:")).to_be_visible(timeout=120_000)
        expect(
            page.get_by_text("report: not used (no report text given)", exact=False)
        ).to_be_visible()
        expect(
            page.get_by_test_id("stMetric").filter(has_text="event probability by 1 year")
        ).to_contain_text("folds")
        expect(page.get_by_test_id("stMetric").filter(has_text="median survival")).to_be_visible()
        _no_exception(page)
    finally:
        page.close()
