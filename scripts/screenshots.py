"""Screenshots of each dashboard view for the README (docs/img/dashboard_*.png).

    .venv/bin/python scripts/screenshots.py [--run runs/demo/fusion] [--patient SYN-0003]

Serves `multimodal dashboard RUN` on a free port of 127.0.0.1 and drives Debian's chromium
(bash scripts/browser.sh installs it) with playwright, headless.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def serve(run: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "multimodal.cli", "dashboard", str(run), "--port", str(port)],
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("the dashboard did not start")


def settle(page, text: str) -> None:
    page.get_by_text(text).first.wait_for(timeout=180_000)
    page.wait_for_timeout(800)
    while page.get_by_test_id("stSpinner").count():
        page.wait_for_timeout(300)
    page.wait_for_timeout(1500)


def shoot(page, path: Path, max_height: int = 4200) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the viewport is stretched."""
    height = page.evaluate(
        "() => Math.max(...Array.from(document.querySelectorAll('section, div'), e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, max_height)})
    page.wait_for_timeout(2500)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 900})


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "demo" / "fusion")
    ap.add_argument("--patient", default="SYN-0003")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    proc, url = serve(args.run)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=ARGS
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
            page.goto(url, wait_until="domcontentloaded")
            settle(page, "Calibration at")
            shoot(page, args.out / "dashboard_cohort.png")

            page.goto(f"{url}/?patient={args.patient}", wait_until="domcontentloaded")
            page.get_by_test_id("stSidebar").get_by_text("Patient", exact=True).click()
            settle(page, "What drove the prediction")
            settle(page, "Modality contributions")
            if not page.get_by_text("Occlusion saliency for").count():  # the model reads voxels
                page.get_by_text("occlusion saliency", exact=True).click()
                settle(page, "with occlusion saliency")
            shoot(page, args.out / "dashboard_patient.png")

            page.get_by_test_id("stSidebar").get_by_text("Compare", exact=True).click()
            settle(page, "Compare patients")
            shoot(page, args.out / "dashboard_compare.png")

            page.get_by_test_id("stSidebar").get_by_text("New patient", exact=True).click()
            settle(page, "Clinical covariates")
            page.get_by_label("age (years)", exact=True).fill("97")
            page.get_by_label(
                "Report text (empty = no report: the report is not used)", exact=True
            ).fill(
                "DIAGNOSIS: Nottingham grade 3. Margins involved by carcinoma. "
                "Lymphovascular invasion: present. Four of 12 lymph nodes contain metastatic carcinoma."
            )
            page.get_by_role("button", name="Predict").click()
            settle(page, "Rests on:")
            shoot(page, args.out / "dashboard_new_patient.png")
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    for name in sorted(args.out.glob("dashboard_*.png")):
        print(name.relative_to(ROOT))


if __name__ == "__main__":
    main()
