"""The console's history page in a real headless Chromium, on the real broker and the real PostgreSQL:
the reliability indices of a scenario computed by hand, the feeder ranking, the chart, the customer figures
and the alert search — and a screenshot (test-output/screenshots/history.png)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from tests.prefixes import fresh_prefix

from gridwatch.config import Settings
from tests.e2e.conftest import CHROMIUM_ARGS, SCREENSHOTS
from tests.history.test_reliability import scenario
from tests.history.test_store import project
from tests.integration.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

TOKEN = "e2e-history-viewer-token-5b1e"


@pytest.fixture
def history_console(chromium, kafka_broker, history_engine, tmp_path):
    from devtools.demo import Processes, gridwatch_argv, wait_http
    from streams.topics import create_topics

    settings = dataclasses.replace(Settings(), bootstrap_servers=kafka_broker,
                                   topic_prefix=fresh_prefix("hist", kafka_broker), run_dir=tmp_path / "run")
    create_topics(settings)
    project(history_engine, scenario())
    port = free_port()
    env = {**os.environ, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
           "GRIDWATCH_RUN_DIR": str(settings.run_dir), "GRIDWATCH_CONSOLE_USERS": f"hana:viewer:{TOKEN}",
           "GRIDWATCH_DATABASE_URL": history_engine.url.render_as_string(hide_password=False),
           "PYTHONUNBUFFERED": "1"}
    procs = Processes()
    log = settings.run_dir / "console.log"
    proc = procs.start("console", gridwatch_argv("console", "--port", str(port)), env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_http(url + "/static/console.css", 90) and proc.poll() is None, log.read_text()[-3000:]
        yield url
    finally:
        procs.stop()


def test_the_history_page_shows_the_indices_ranking_figures_and_search(history_console, chromium):
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            # without credentials the page is the sign-in form, not an error document
            anonymous = browser.new_page()
            anonymous.goto(history_console + "/history")
            assert anonymous.locator("form input[type=password], form input[name=secret]").count() >= 1
            context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {TOKEN}"},
                                          viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            # the board links to the history
            page.goto(history_console + "/")
            page.click("[data-testid=history-link]")
            page.wait_for_url(history_console + "/history")
            page.wait_for_selector("body[data-loaded=true]", timeout=30000)
            page.goto(history_console + "/history?year=2026")
            page.wait_for_selector("body[data-loaded=true]", timeout=30000)

            ytd = page.locator("#reliability-rows tr", has_text="year to date")
            assert ytd.locator("td").all_inner_texts() == ["year to date", "15", "0.733", "46.0", "62.7", "0.467",
                                                           "0.133", "690"]
            assert page.locator("#ranking-rows tr td:first-child").all_inner_texts() == ["F1", "F2"]
            bars = page.locator("#saidi-chart rect.bar")
            assert [bars.nth(i).get_attribute("data-month") for i in range(bars.count())] == ["2026-01", "2026-02"]
            assert "not applied" in page.locator("#med").inner_text()
            assert page.locator("#alert-rows tr").count() == 9

            page.select_option("#feeder", "F2")
            page.click("#period button[type=submit]")
            expect(page.locator("#reliability-rows tr")).to_have_count(3)  # January, February, year to date
            expect(page.locator("#reliability-rows tr", has_text="2026-01")).to_contain_text("30.0")
            page.select_option("#feeder", "")
            page.click("#period button[type=submit]")
            page.wait_for_selector("body[data-loaded=true]")
            page.fill("#q", "A7")
            page.click("#search button[type=submit]")
            expect(page.locator("#alert-rows tr")).to_have_count(1)
            assert "A7" in page.locator("#alert-rows").inner_text()
            page.fill("#q", "")
            page.click("#search button[type=submit]")
            expect(page.locator("#alert-rows tr")).to_have_count(9)

            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "history.png"), full_page=True)
            csv = context.request.get(history_console + page.locator("#reliability-csv").get_attribute("href"))
            assert csv.status == 200 and csv.text().startswith("scope,period,customers_served")
        finally:
            browser.close()
    assert problems == []
