"""The web UI in a real browser (Debian's chromium, headless, driven by Selenium): what a release
engineer sees, and what an anonymous visitor does not get to do. Screenshots of each view are
saved under test-output/screenshots/ for a reviewer to look at."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from tests.farm import DEFAULT_BUILDER
from tests.sdists import setuptools_sdist

pytestmark = pytest.mark.farm

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"


@pytest.fixture
def browser(backends):
    """Opens a browser on the farm (logged in as a release engineer, or not); closes them after."""
    opened = []

    def open_one(logged_in: bool):
        opened.append(chromium(backends, logged_in))
        return opened[-1]

    yield open_one
    for driver in opened:
        driver.quit()


def chromium(farm, logged_in: bool):
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1600,1200",
    ):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.get(farm.status["ui"])
    if logged_in:  # the session a release engineer's login gives
        for cookie in farm.session().cookies:
            driver.add_cookie({"name": cookie.name, "value": cookie.value, "path": "/"})
    return driver


def shot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def wait(driver, condition, timeout: float = 60):
    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        shot(driver, "timed-out")  # what the browser showed instead
        raise AssertionError(
            f"timed out at {driver.current_url}: {driver.find_element(By.TAG_NAME, 'body').text[:2000]}"
        ) from None


@pytest.fixture(scope="module")
def built(backends, upstream, tmp_path_factory):
    """A package built and published, and another waiting on a review."""
    tmp = tmp_path_factory.mktemp("ui")
    upstream.add(setuptools_sdist(tmp, "ui-shown", "1.0"))
    rc, shown = backends.build("ui-shown==1.0")
    assert rc == 0, shown
    upstream.add(setuptools_sdist(tmp, "ui-newdep", "1.0"))
    upstream.add(setuptools_sdist(tmp, "ui-waits", "1.0", requires=["ui-newdep"]))
    assert backends.build("ui-waits==1.0")[0] == 1
    return shown


def test_a_release_engineer_finds_a_wheel_by_sha256_and_lands_on_its_build(
    backends, built, browser
):
    driver = browser(logged_in=True)
    driver.get(backends.status["ui"] + "#/packages")
    wait(
        driver,
        ready.presence_of_element_located(
            (By.CSS_SELECTOR, '#packages tr[data-project="ui-shown"]')
        ),
    )
    shot(driver, "dashboard")
    wheel = built["wheels"][0]
    sha256 = json.loads(backends.cli("which", "ui-shown==1.0").stdout)["sha256"]
    field = driver.find_element(By.CSS_SELECTOR, "#find-wheel input[name=q]")
    field.send_keys(sha256)
    field.submit()
    wait(driver, ready.url_contains(f"/builds/{built['number']}"))
    wait(
        driver,
        ready.text_to_be_present_in_element(
            (By.TAG_NAME, "body"), f"ui-shown 1.0: published {wheel}"
        ),
    )
    shot(driver, "build-found-by-sha256")


def test_the_console_view_shows_a_forced_builds_package(backends, built, browser):
    driver = browser(logged_in=False)
    driver.get(backends.status["ui"] + "#/console")
    wait(driver, ready.text_to_be_present_in_element((By.TAG_NAME, "body"), "ui-shown"))
    shot(driver, "console")
    driver.get(backends.status["ui"] + f"#/builders/{DEFAULT_BUILDER}")
    shot(driver, "builder")


def test_an_anonymous_visitor_sees_the_dashboard_but_no_approve_button(backends, built, browser):
    driver = browser(logged_in=False)
    driver.get(backends.status["ui"] + "#/packages")
    wait(
        driver,
        ready.presence_of_element_located(
            (By.CSS_SELECTOR, '#review-queue tr[data-project="ui-newdep"]')
        ),
    )
    assert driver.find_elements(By.CSS_SELECTOR, "button.approve") == []
    shot(driver, "dashboard-anonymous")


def test_a_release_engineer_approves_a_queued_project_and_its_build_appears(
    backends, built, browser
):
    driver = browser(logged_in=True)
    driver.get(backends.status["ui"] + "#/packages")
    row = wait(
        driver,
        ready.presence_of_element_located(
            (By.CSS_SELECTOR, '#review-queue tr[data-project="ui-newdep"]')
        ),
    )
    row.find_element(By.NAME, "note").send_keys("read it in the browser")
    shot(driver, "review-queue")
    row.find_element(By.CSS_SELECTOR, "button.approve").click()
    wait(driver, ready.url_contains("#/packages"))
    backends.wait_until_idle()
    assert "ui-newdep  # approved by wheelwright" in (backends.state / "allowlist.txt").read_text()
    driver.get("about:blank")  # the dashboard anew, not the one the page already holds
    driver.get(backends.status["ui"] + "#/packages")
    wait(
        driver,
        ready.presence_of_element_located(
            (By.CSS_SELECTOR, '#packages tr[data-project="ui-newdep"]')
        ),
    )
    wait(
        driver,
        ready.presence_of_element_located(
            (By.CSS_SELECTOR, '#packages tr[data-project="ui-waits"]')
        ),
    )
    shot(driver, "dashboard-after-approval")
