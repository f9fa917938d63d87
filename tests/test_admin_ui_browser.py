"""The admin UI end to end in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, through Selenium): log in (a wrong token refused), send a request,
see its run and its steps, replay a dead job and see it delivered, and a webhook
carrying ``<script>`` and ``<img onerror>`` in its body and a header shown as text,
never run.

One browser session walks the whole flow. Without chromium the test skips, except
under CI=true, where it fails (.ci/run installs both packages).

``HOOKLINE_SCREENSHOTS=docs/images`` saves a PNG of each page on the way: the
screenshots in docs/operations.md are made so (see there).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
import requests

from conftest import ROOT
from test_admin_ui import TOKEN, UI, ui_server
from test_async_delivery import dest, servers, sqlite_store, wait_until  # noqa: F401  (fixtures)

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = os.environ.get("HOOKLINE_SCREENSHOTS")
# Runs in a page would set this title (or the flag) if any of it ran.
SCRIPT = "<script>window.__pwned = 'script'; document.title = 'pwned'</script>"
IMG = "<img src=x onerror=\"window.__pwned = 'img'; document.title = 'pwned'\">"


@pytest.fixture
def browser():
    if CHROMIUM is None or DRIVER is None:
        message = "chromium and chromedriver are needed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    os.environ.setdefault("SE_OFFLINE", "true")         # Selenium Manager never downloads a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def shot(driver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(height, 480), 1800) + chrome)
        driver.save_screenshot(str(Path(SHOTS) / f"ui-{name}.png"))
        driver.set_window_size(1280, 860)


def follow(driver, element) -> None:
    """Click ``element`` and wait for the next page to replace this one (a check that meets the
    page mid-navigation may fail: it is retried)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    html = driver.find_element("tag name", "html")
    element.click()
    WebDriverWait(driver, 10, ignored_exceptions=[WebDriverException]).until(expected_conditions.staleness_of(html))


def inert(driver) -> None:
    """Nothing of a payload ran, and none of it became an element."""
    assert driver.execute_script("return window.__pwned === undefined"), driver.execute_script("return window.__pwned")
    assert driver.title != "pwned" and driver.find_elements("css selector", "img") == []
    assert "<script>" not in [s.get_attribute("innerHTML") for s in driver.find_elements("css selector", "script")]


def test_log_in_see_a_run_replay_a_dead_job_and_payloads_stay_text(browser, dest, servers, sqlite_store):
    from selenium.webdriver.common.by import By
    server = ui_server(servers, dest, sqlite_store)
    b = browser
    b.get(server.url + UI + "/dlq")
    assert "/ui/login?next=" in b.current_url, b.current_url
    shot(b, "login")

    def log_in(token):
        b.find_element(By.ID, "token").send_keys(token)
        follow(b, b.find_element(By.CSS_SELECTOR, "form.login button"))
    log_in("not-the-admin-token")
    assert b.find_element(By.CSS_SELECTOR, "p.error").text == "That is not the admin token."
    log_in(TOKEN)
    assert b.current_url == server.url + UI + "/dlq" and b.find_element(By.TAG_NAME, "h1").text == "Dead letters"

    rid = f"xss-{uuid.uuid4().hex[:6]}"
    dest.plan(rid, 400)             # the destination refuses it: the job dies at once
    resp = requests.post(server.url + "/u/orders", json={"id": rid, "note": SCRIPT + IMG},
                         headers={"X-Note": SCRIPT + IMG, "X-Request-Id": rid}, timeout=10)
    assert resp.status_code == 200, resp.text
    for _ in range(3):
        assert requests.get(server.url + "/u/legacy", timeout=10).status_code == 200
    dest.plan("lookup-refused", 503)       # a run that fails: the destination answers 503, the client 502
    assert requests.post(server.url + "/u/lookup", json={"id": "lookup-refused"}, timeout=10).status_code == 502

    # the run: found by a header value from the search box, then step by step
    search = b.find_element(By.CSS_SELECTOR, "form.search input[name=q]")
    search.send_keys(rid)
    follow(b, b.find_element(By.CSS_SELECTOR, "form.search button"))
    wait_until(lambda: b.refresh() or b.find_elements(By.CSS_SELECTOR, "table.runs tbody tr"), 15,
               "the run in the search results")
    (run_link,) = b.find_elements(By.CSS_SELECTOR, "table.runs tbody tr td:first-child a")
    run_id = run_link.text
    shot(b, "search")
    follow(b, run_link)
    assert b.find_element(By.TAG_NAME, "h1").text == f"Run {run_id}"
    steps = {li.find_element(By.CSS_SELECTOR, ".step-head b").text: li for li in b.find_elements(By.CSS_SELECTOR, "li.step")}
    assert list(steps) == ["shape"] and "transform" in steps["shape"].text, list(steps)
    output = steps["shape"].find_element(By.CSS_SELECTOR, "pre").text
    assert json.loads(output) == {"id": rid, "note": SCRIPT + IMG, "said": SCRIPT + IMG}, output
    header = b.find_element(By.XPATH, "//table[@class='headers']//tr[th='x-note']/td").text
    assert header == SCRIPT + IMG, header
    inert(b)

    # the dead job: replayed from the dead letters, then delivered
    def dead_row():
        b.get(server.url + UI + "/dlq")
        return b.find_elements(By.CSS_SELECTOR, "tr.state-dead")
    wait_until(lambda: len(dead_row()) == 1, 15, "the dead job on the dead-letters page")
    shot(b, "dlq")
    row = b.find_element(By.CSS_SELECTOR, "tr.state-dead")
    assert "400" in row.find_element(By.CSS_SELECTOR, "td.err").text, row.text
    follow(b, row.find_element(By.CSS_SELECTOR, "button.replay"))
    assert b.find_element(By.CSS_SELECTOR, "p.notice").text == "The job was replayed."

    def delivered():
        b.refresh()
        return b.find_elements(By.CSS_SELECTOR, "tr.state-done")
    wait_until(delivered, 15, "the replayed job delivered")
    assert [c.status for c in dest.of(rid)] == [400, 200]
    payload = b.find_element(By.CSS_SELECTOR, "pre.value").text      # the stored context, as text
    assert json.dumps(SCRIPT + IMG) in payload, payload
    inert(b)
    shot(b, "delivery")

    # the run page now shows both attempts of its job
    b.get(server.url + UI + f"/runs/{run_id}")
    wait_until(lambda: b.refresh() or len(b.find_elements(By.CSS_SELECTOR, "table.attempts tr.outcome-done")) == 1,
               15, "the delivered attempt on the run page")
    outcomes = [tr.find_elements(By.TAG_NAME, "td")[2].text
                for tr in b.find_elements(By.CSS_SELECTOR, "table.attempts tr[class^=outcome]")]
    assert outcomes == ["dead", "done"], outcomes
    inert(b)
    shot(b, "run")

    b.get(server.url + UI + "/deliveries")
    assert b.find_elements(By.CSS_SELECTOR, "tr.state-done"), b.page_source[:500]
    shot(b, "deliveries")
    b.get(server.url + UI + "/")
    rows = {tr.find_element(By.CSS_SELECTOR, "td > a").text: [td.text for td in tr.find_elements(By.CSS_SELECTOR, "td.num")]
            for tr in b.find_elements(By.CSS_SELECTOR, "table.pipelines tbody tr")}
    assert list(rows) == ["ui-legacy", "ui-lookup", "ui-orders", "ui-quiet", "ui-relay"], rows
    assert rows["ui-legacy"][1:3] == ["3", "0"] and rows["ui-orders"][1:3] == ["1", "0"], rows   # last hour
    assert rows["ui-lookup"][1:3] == ["1", "1"], rows
    assert rows["ui-legacy"][3].endswith(" ms") and rows["ui-legacy"][4].endswith(" ms"), rows   # p50, p99
    shot(b, "pipelines")
    follow(b, b.find_element(By.LINK_TEXT, "ui-legacy"))
    warnings = b.find_elements(By.CSS_SELECTOR, "ul.diagnostics li.warning")
    assert any("legacy-yaml" in w.text for w in warnings), [w.text for w in warnings]
    assert len(b.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")) == 3
    shot(b, "pipeline")

    follow(b, b.find_element(By.CSS_SELECTOR, "form.logout button"))
    assert "/ui/login" in b.current_url and "You are logged out." in b.page_source
    b.get(server.url + UI + "/")
    assert "/ui/login?next=" in b.current_url
