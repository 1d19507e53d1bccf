"""The web page in headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium) against a real server: type a caption, draw, wait for every stage's image and
the word maps, check their labels, the out-of-vocabulary mark and that every image
decodes; then change one word and check that the new image is the changed caption drawn
from the same noise. Set ATTNGAN_SCREENSHOT=path to keep a screenshot of the page.

Without Chromium, its driver or Selenium the test skips, saying why; under CI=true it
fails (tests/optional.py), since .ci/run installs them."""

import base64
import os
import shutil
import sys

import pytest

import optional
from optional import need

webdriver = need("selenium.webdriver", "the test extra: pip install -e '.[test]'")
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from attngan.serve.app import create_app  # noqa: E402
from attngan.serve.engine import Engine  # noqa: E402
from serving import CPU, LiveServer, httpx, pixels  # noqa: E402


@pytest.fixture(scope="module")
def cfg(serve_cfg):
    return serve_cfg


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def require(available: bool, reason: str) -> None:
    """Skip for want of the browser, saying ``reason``; under CI=true fail instead."""
    if not available:
        if optional.in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)


ALL_DECODED = "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


def start_chromium():
    """Headless Chromium under Selenium; ``require`` skips (fails under CI=true) without it."""
    require(bool(CHROMIUM and DRIVER), "no headless browser: apt-get install chromium chromium-driver (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
    ):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    except WebDriverException as err:
        require(False, f"chromium did not start: {err.msg}")


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.mark.parametrize("ci", [True, False])
def test_without_chromium_the_browser_test_fails_under_ci_and_skips_elsewhere(monkeypatch, ci):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", None)
    monkeypatch.setattr(optional, "in_ci", lambda: ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="no headless browser: apt-get install chromium chromium-driver"):
        start_chromium()


def texts(elements) -> list[str]:
    return [e.text for e in elements]


def wait_for(driver, condition, what: str, seconds: float = 60):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1).until(lambda d: condition(d))
    except TimeoutException:
        error = driver.find_element(By.ID, "error").text
        raise AssertionError(f"the page never showed {what} (error shown: {error!r})") from None


def test_draw_a_caption_then_change_one_word(browser, cfg, tmp_path):
    with (
        LiveServer(create_app(Engine(cfg, CPU, cfg.FILE))) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
    ):
        browser.get(live.url + "/")
        wait_for(
            browser,
            lambda d: "stages 64×64, 128×128" in d.find_element(By.ID, "model-info").text,
            "the model's description",
        )
        caption = browser.find_element(By.ID, "caption")
        caption.clear()
        caption.send_keys("a red zebra circle at the top")
        browser.find_element(By.ID, "seed").send_keys("42")
        Select(browser.find_element(By.ID, "count")).select_by_visible_text("2")
        browser.find_element(By.ID, "draw").click()
        wait_for(
            browser,
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, ".sample img.word-map")) == 12 and d.execute_script(ALL_DECODED)
            ),
            "two samples with their word maps",
        )

        kept = ["a", "red", "circle", "at", "the", "top"]
        assert texts(browser.find_elements(By.CSS_SELECTOR, "#tokens .oov")) == ["zebra"]
        assert texts(browser.find_elements(By.CSS_SELECTOR, "#tokens .word")) == kept
        samples = browser.find_elements(By.CSS_SELECTOR, "#samples .sample")
        assert len(samples) == 2
        for sample in samples:
            assert texts(sample.find_elements(By.CSS_SELECTOR, ".stages figcaption")) == ["64×64", "128×128"]
            assert texts(sample.find_elements(By.CSS_SELECTOR, ".maps figcaption")) == kept
            assert [e.get_attribute("data-word") for e in sample.find_elements(By.CSS_SELECTOR, "img.word-map")] == kept
        # every image decodes, at the size its label says
        for img in browser.find_elements(By.CSS_SELECTOR, "#samples img"):
            size = 64 if img.get_attribute("data-size") == "64" else 128
            assert browser.execute_script("return arguments[0].naturalWidth", img) == size
            assert pixels(client.get(img.get_attribute("src")).content).shape == (size, size, 3)

        # change one word: "red" -> "blue", the same seed
        Select(browser.find_element(By.ID, "word-index")).select_by_visible_text("red")
        browser.find_element(By.ID, "new-word").send_keys("blue")
        browser.find_element(By.ID, "compare").click()
        wait_for(
            browser,
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, "#comparison .pair img")) == 4 and d.execute_script(ALL_DECODED)
            ),
            "the two pairs",
        )
        pairs = browser.find_elements(By.CSS_SELECTOR, "#comparison .pair")
        expected = client.post(
            "/v1/generate", json={"captions": ["a blue circle at the top"], "n": 2, "seed": 42, "format": "base64"}
        ).json()["captions"][0]["images"]
        last_stages = [s.find_elements(By.CSS_SELECTOR, ".stages img")[-1].get_attribute("src") for s in samples]
        for pair, before_src, sample in zip(pairs, last_stages, expected):
            before, after = pair.find_elements(By.TAG_NAME, "img")
            assert before.get_attribute("src") == before_src
            assert client.get(after.get_attribute("src")).content == base64.b64decode(sample["stages"][-1]["base64"])
            labels = pair.find_elements(By.CSS_SELECTOR, ".changed")
            assert texts(labels) == ["red", "blue"]
        # the whole page in one screenshot
        browser.set_window_size(1280, browser.execute_script("return document.documentElement.scrollHeight") + 100)
        browser.execute_script("window.scrollTo(0, 0)")
        shot = os.environ.get("ATTNGAN_SCREENSHOT") or str(tmp_path / "page.png")
        assert browser.save_screenshot(shot)
