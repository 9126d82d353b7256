"""The screenshot of the page's "Inside" view in docs/ and the README: `transformer-mt serve`
on a checkpoint, headless Chromium opening /inside, typing one sentence (by default the first
of the Tatoeba test set in data/) and saving the whole view as a PNG.

    .venv/bin/python scripts/screenshot_inside.py --checkpoint /work/models/demo.ckpt \
        --out docs/inside_view.png

Needs Debian's `chromium` and `chromium-driver` and the 'dev' extra (selenium).
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def first_test_sentence() -> str:
    with lzma.open(REPO / "data" / "test.en.xz", "rt", encoding="utf-8") as handle:
        return handle.readline().strip()


def serve(checkpoint: str) -> tuple[subprocess.Popen, str]:
    """A server on a free loopback port, once it answers /health."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "transformer_mt.commands.main", "serve",
                                "--checkpoint", checkpoint, "--port", str(port),
                                "--device", "cpu"], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"serve exited with {process.returncode}") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit("serve did not answer /health within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "inside_view.png")
    parser.add_argument("--sentence", help="default: the first line of data/test.en.xz")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sentence = args.sentence or first_test_sentence()
    process, url = serve(args.checkpoint)
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 "--hide-scrollbars", f"--window-size={args.width},1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(url + "/inside")
        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#beam-size option"))
        driver.find_element(By.ID, "inside-source").send_keys(sentence)
        driver.find_element(By.ID, "explain").click()
        WebDriverWait(driver, 120).until(
            lambda d: d.find_element(By.ID, "status").text.endswith("ms"))
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(args.width, height)
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {args.out} ({sentence!r})")


if __name__ == "__main__":
    main()
