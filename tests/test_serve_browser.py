"""mapper serve in a real browser: headless Chromium driven by Selenium through Debian's chromium-driver. The
test run is served by the `mapper serve` command; the map draws imagery and cropland tiles, clicking a block
opens the inspector with its id, switching the colouring changes the legend, and a screenshot shows imagery
and cropland (saved to $MAPPER_TEST_SCREENSHOTS when set, to be looked at)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import pytest
from conftest import WORLD_RUN_BLOCK

TILE_COUNT_JS = """
const loaded = (cls) => Array.from(document.querySelectorAll(`.${cls} img.leaflet-tile-loaded`));
const opaque = (img) => { const c = document.createElement('canvas'); c.width = c.height = 64;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0, 64, 64);
  const d = g.getImageData(0, 0, 64, 64).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0;
  return n; };
return [arguments[0], arguments[1]].map((cls) => loaded(cls).reduce((s, img) => s + opaque(img), 0));
"""


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail("headless Chromium and its driver are needed: `apt-get install chromium chromium-driver`")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,900"):
        opts.add_argument(arg)
    opts.binary_location = browser
    return webdriver.Chrome(service=Service(driver), options=opts)  # the system driver: Selenium downloads nothing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(world_run):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mapper.cli", "serve", str(world_run), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "api/view", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"mapper serve exited: {proc.stderr.read()}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_the_page_in_chromium(served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d = _driver()
    try:
        d.get(served)
        wait = WebDriverWait(d, 60)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        # the map draws tiles with pixels: imagery of source A and the final cropland
        wait.until(lambda d: all(n > 0 for n in d.execute_script(TILE_COUNT_JS, "layer-imagery-demo-a",
                                                                       "layer-final")))  # fmt: skip

        block = d.find_element(By.CSS_SELECTOR, f'path.block[data-block-id="{WORLD_RUN_BLOCK}"]')
        block.click()
        inspector = d.find_element(By.ID, "inspector")
        wait.until(lambda d: inspector.get_attribute("data-block-id") == WORLD_RUN_BLOCK)
        wait.until(lambda d: WORLD_RUN_BLOCK in d.find_element(By.ID, "inspector-title").text)
        assert len(inspector.find_elements(By.CSS_SELECTOR, ".pictures img")) == 5

        legend = d.find_element(By.ID, "legend")
        before = legend.text
        Select(d.find_element(By.ID, "colour-by")).select_by_value("decision")
        wait.until(lambda d: legend.get_attribute("data-colour-by") == "decision")
        assert legend.text != before and "blocks: decision" in legend.text and "Merge" in legend.text

        time.sleep(1.0)  # the last tiles fade in
        shot = tmp_path / "serve.png"
        d.save_screenshot(str(shot))
        errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
    finally:
        d.quit()
    if os.environ.get("MAPPER_TEST_SCREENSHOTS"):
        shutil.copy(shot, os.path.join(os.environ["MAPPER_TEST_SCREENSHOTS"], "serve.png"))
    img = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)[70:740, 20:980].astype(int)  # the map
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    yellow = (r > 170) & (g > 120) & (b < 80) & (r - b > 120)  # the final layer's amber at 80 % over imagery
    cropland = yellow.mean()
    imagery = ((img.std(axis=2) > 12) & ~yellow).mean()  # textured, coloured pixels that are not cropland
    assert cropland > 0.05 and imagery > 0.2, (cropland, imagery)
