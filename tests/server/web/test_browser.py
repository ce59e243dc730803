"""The web view in a real browser: Debian's chromium, headless, driven by Selenium through chromium-driver.

Clicks through repository -> tag -> image -> referrer, deletes a tag with its form, signs in with Basic, and
saves a screenshot of each page in the test's directory and in ``docs/screenshots/`` (the README shows those).
Marked ``interop``: without chromium or chromedriver the tests skip, and under CI that is a failure
(``tests/conftest.py``).
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import require_binary
from tests.server.web.conftest import PASSWORDS, Populated
from tests.support.serve import RunningServe

pytestmark = pytest.mark.interop

SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
WIDTH = 1280
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium = require_binary("chromium")
    driver_path = require_binary("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument(f"--window-size={WIDTH},900")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, name: str, artefacts: Path) -> Path:
    """The whole page (beyond the window) as ``name``.png, in the test's directory and in docs/screenshots/."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    height = min(int(metrics["cssContentSize"]["height"]), 4000)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1},
        },
    )
    path = artefacts / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    assert path.stat().st_size > 5000  # a rendered page, not a blank image
    return path


def heading(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "h1").text)


def click(driver: WebDriver, by: str, value: str) -> None:
    """Click the element and wait for the page it leads to."""
    element = driver.find_element(by, value)
    try:
        element.click()
    except WebDriverException as exc:
        # A click that submits a form can navigate before chromedriver is done with the element, which then
        # reports the node gone: the page this waits for is on its way.
        if "does not belong to the document" not in str(exc):
            raise
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(element))


def test_click_from_repository_to_tag_to_image_to_referrer(
    browser: WebDriver, open_serve: RunningServe, populated: Populated, tmp_path: Path
) -> None:
    browser.get(f"{open_serve.url}/")
    assert heading(browser) == "Repositories"
    screenshot(browser, "repositories", tmp_path)

    # The filter box's script hides rows as you type (the form filters on the server without it).
    box = browser.find_element(By.ID, "filter")
    box.send_keys("multi")
    visible = [
        row.text for row in browser.find_elements(By.CSS_SELECTOR, "#repositories tbody tr") if row.is_displayed()
    ]
    assert len(visible) == 1 and visible[0].startswith("team/multi")
    box.clear()
    box.send_keys("\n")
    # The empty query is submitted: wait for the new page, on which nothing is hidden (the URL test passed at
    # once, before the submit had navigated, and the link was looked for among the rows the script had hidden).
    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(box))

    click(browser, By.LINK_TEXT, "team/app")
    assert heading(browser) == "team/app"
    assert browser.find_element(By.CSS_SELECTOR, 'tr[data-tag="1.0"]').is_displayed()
    screenshot(browser, "tags", tmp_path)

    click(browser, By.CSS_SELECTOR, 'a.tag[href$="/1.0"]')
    assert heading(browser) == "team/app:1.0"
    assert browser.find_element(By.ID, "digest").text == populated.app_digest
    commands = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "code.command")]
    assert f"docker pull {open_serve.host}/team/app:1.0" in commands
    screenshot(browser, "image", tmp_path)

    click(browser, By.CSS_SELECTOR, f'a.referrer[title="{populated.sbom_digest}"]')
    assert populated.sbom_digest[:19] in heading(browser)
    assert "application/spdx+json" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    # The SBOM's own referrer (an attestation) is in its tree.
    assert browser.find_element(By.CSS_SELECTOR, f'a.referrer[title="{populated.attestation_digest}"]')
    screenshot(browser, "referrer", tmp_path)

    click(browser, By.ID, "subject")
    assert browser.find_element(By.ID, "digest").text == populated.app_digest

    browser.get(f"{open_serve.url}/")
    click(browser, By.LINK_TEXT, "team/multi")
    click(browser, By.CSS_SELECTOR, 'a.tag[href$="/v2"]')
    platforms = browser.find_element(By.ID, "platforms").text
    assert "linux/amd64" in platforms and "linux/arm64/v8" in platforms
    screenshot(browser, "index", tmp_path)
    click(browser, By.CSS_SELECTOR, "#platforms a.child")
    assert "linux/amd64" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text


def test_delete_a_tag_with_its_form(browser: WebDriver, open_serve: RunningServe, tmp_path: Path) -> None:
    browser.get(f"{open_serve.url}/repo/team/app")
    click(browser, By.CSS_SELECTOR, 'tr[data-tag="latest"] button[data-reference="latest"]')
    assert "Deleted latest." in browser.find_element(By.CSS_SELECTOR, ".notice").text
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-tag="latest"]')
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-tag="1.0"]')
    screenshot(browser, "deleted", tmp_path)
    assert httpx.get(f"{open_serve.url}/v2/team/app/manifests/latest").status_code == 404
    assert httpx.get(f"{open_serve.url}/v2/team/app/manifests/1.0").status_code == 200


def test_sign_in_with_basic_and_see_only_what_the_user_may_pull(
    browser: WebDriver, acl_serve: RunningServe, tmp_path: Path
) -> None:
    # The page asks for credentials (headless chromium then waits at its invisible password dialog).
    browser.get(f"{acl_serve.url}/")
    assert [e.status for e in acl_serve.requests.events("GET", "/")][-1:] == [401]
    assert not browser.find_elements(By.CSS_SELECTOR, "a.repo")

    # Credentials in the URL sign in, and the browser keeps sending them to this origin.
    browser.get(f"http://bob:{PASSWORDS['bob']}@{acl_serve.host}/")
    assert browser.find_element(By.ID, "user").text == "bob"
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.repo")]
    assert names == ["bob/tool", "team/app", "team/multi"]
    screenshot(browser, "signed-in", tmp_path)

    click(browser, By.LINK_TEXT, "team/app")
    assert browser.find_element(By.ID, "user").text == "bob"
    assert not browser.find_elements(By.CSS_SELECTOR, "button.danger")  # bob may pull here, not delete

    browser.get(f"{acl_serve.url}/repo/alice/secret")
    assert heading(browser) == "Not allowed"

    browser.get(f"{acl_serve.url}/repo/bob/tool")
    click(browser, By.CSS_SELECTOR, 'button[data-reference="1"]')
    assert "Deleted 1." in browser.find_element(By.CSS_SELECTOR, ".notice").text
    assert httpx.get(f"{acl_serve.url}/v2/bob/tool/manifests/1", auth=("bob", PASSWORDS["bob"])).status_code == 404
