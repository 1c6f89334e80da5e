"""The demo page in a real headless Chromium: load it, run one example, save a screenshot.

The README's figure is ``ideface-figure demo-screenshot --out notebooks/figures/demo.png``
(``experiments/figure.py``).

Drives Debian's ``chromium`` and ``chromedriver`` (``apt-get install -y chromium chromium-driver``)
through Selenium. Both binaries are named explicitly, so Selenium Manager never downloads a browser
or a driver. The page is served in this process on a free 127.0.0.1 port (``experiments.demo_app``);
the screenshot is the whole page, stored as a palette PNG under ``--max-kb``.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "install Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
# Chromium's own background traffic (updates, sync, metrics) is off: the page is all it should load.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--metrics-recording-only",
)


class BrowserMissing(RuntimeError):
    """No Chromium, chromedriver or Selenium here; the message says what to install."""


def find_browser() -> tuple[str, str]:
    """(chromium binary, chromedriver) from PATH; raises :class:`BrowserMissing` naming what is absent."""
    binary = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", binary), ("chromedriver", driver)) if path is None]
    if missing:
        raise BrowserMissing(f"{' and '.join(missing)} not found on PATH: {INSTALL_HINT}")
    return binary, driver


def open_browser(width: int = 1280, height: int = 1000):
    """A headless Chromium WebDriver of that window size (Selenium with Debian's binaries)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise BrowserMissing("selenium is not installed: pip install selenium (it is in the dev extra)") from None
    binary, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def run_example(driver, url: str, row: int = 0, timeout: float = 120) -> str:
    """Load the page, pick example ``row``, press Generate and wait for the faces; returns the status line.

    Raises selenium's TimeoutException when the page does not get there within ``timeout`` seconds.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    driver.get(url)
    rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#examples tbody tr"))
    rows[row].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#identity1 img"))
    driver.find_element(By.ID, "generate").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text.strip())
    status = driver.find_element(By.ID, "status").text.strip()
    if not status.startswith("Generated"):
        return status
    # Every face and the step strip are in, and the images have been decoded.
    wait.until(
        lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('#faces img, #step_view img')];"
            "return imgs.length > 1 && imgs.every(i => i.complete && i.naturalWidth > 0);"
        )
    )
    return status


def face_sizes(driver) -> list[tuple[int, int]]:
    """(natural width, height) of every face the page shows."""
    return [
        tuple(size)
        for size in driver.execute_script(
            "return [...document.querySelectorAll('#faces img')].map(i => [i.naturalWidth, i.naturalHeight]);"
        )
    ]


def page_png(driver) -> bytes:
    """A PNG of the whole page (beyond the window), through the DevTools protocol."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    return base64.b64decode(shot["data"])


def save_small_png(png: bytes, out: Path, max_kb: int = 300) -> Path:
    """Store a screenshot as a 256-colour PNG, scaled down in 10% steps until it is under ``max_kb``."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        buffer = io.BytesIO()
        image.quantize(256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_kb * 1024 or image.width < 400:
            out.write_bytes(buffer.getvalue())
            return out
        image = image.resize((round(image.width * 0.9), round(image.height * 0.9)), Image.LANCZOS)


def screenshot_demo(
    checkpoint: str = "toy", out: Path = Path("demo.png"), row: int = 0, width: int = 1280, max_kb: int = 300
) -> tuple[Path, str]:
    """Serve the demo page of ``checkpoint`` on a free 127.0.0.1 port, run example ``row`` in headless
    Chromium and save the page under ``max_kb``; returns (the PNG written, the page's status line).
    Raises :class:`BrowserMissing` before anything is loaded when Chromium or its driver is absent."""
    from experiments.demo_app import build_app, launch
    from experiments.demo_backend import Demo

    find_browser()
    demo = Demo.load(checkpoint)
    app = build_app(demo)
    try:
        url = launch(app, demo, port=None, block=False)
        driver = open_browser(width)
        try:
            status = run_example(driver, url, row)
            png = page_png(driver)
        finally:
            driver.quit()
    finally:
        app.close()
        demo.close()
    return save_small_png(png, Path(out), max_kb), status
