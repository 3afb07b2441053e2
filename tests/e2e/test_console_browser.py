"""The operations console in a real headless Chromium, against a real broker, worker and `gridwatch console`.

Sign-in and the board; an alert produced to Kafka showing up without a reload; an operator acknowledging
an alert from its detail page, and that change coming back on ``alerts``; a viewer without actions and
refused by the API; replies and figures following the stream; screenshots; and no console errors anywhere.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import quote

import pytest

from gridwatch.config import ALERT_ACTIONS, ALERTS, FEEDBACK
from tests.e2e.conftest import (CUSTOMERS, FEEDER, OPERATOR, OTHER_TRANSFORMER, OUTAGE_CUSTOMERS, OUTPUT, SCREENSHOTS,
                                TRANSFORMER, VIEWER, alert_record, now_iso)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROW = 'tr[data-testid="alert-row"][data-alert-id="{}"]'


def row(page, alert_id: str):
    return page.locator(ROW.format(alert_id))


def count(page, status: str) -> int:
    return int(page.get_by_test_id(f"count-{status}").locator(".count-n").inner_text())


def mark_document(page) -> None:
    """A value on the window that a reload would wipe out."""
    page.evaluate("window.gwNotReloaded = 'yes'")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.gwNotReloaded") == "yes", "the page was reloaded"


def api_path(alert_id: str) -> str:
    return "/api/alerts/" + quote(alert_id, safe="")


def wait_for_detail(page, alert_id: str) -> None:
    page.wait_for_url(f"**/alerts/{quote(alert_id, safe='')}")
    page.get_by_test_id("detail-facts").get_by_text(alert_id).wait_for()


def test_sign_in_shows_the_board_with_counts_and_filters(stack, sign_in):
    session = sign_in(OPERATOR)
    page = session.page
    header = page.get_by_test_id("header")
    assert header.get_by_test_id("user-name").inner_text() == "olga"
    assert header.get_by_test_id("user-role").inner_text().lower() == "operator"
    assert header.get_by_role("button", name="Sign out").is_visible()

    for a in stack.shared["baseline"]:
        row(page, a["alert_id"]).wait_for()
    api = session.request.get("/api/alerts").json()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=alert-row]').length === %d"
                           % len(api["alerts"]))
    for status in ("open", "acknowledged", "resolved"):
        assert count(page, status) == api["counts"][status]
    assert count(page, "open") >= 1 and count(page, "resolved") >= 1

    # the board is a table with column headers, badges and the topology from the customer directory
    assert page.get_by_role("columnheader", name="Severity").is_visible()
    outage = row(page, stack.shared["baseline"][0]["alert_id"])
    assert outage.get_by_test_id("severity-badge").inner_text() == "critical"
    assert outage.get_by_test_id("status-badge").inner_text() == "open"
    assert FEEDER in outage.inner_text() and OTHER_TRANSFORMER in outage.inner_text()

    # filters: by status, then by feeder; counts follow the other filters
    page.get_by_label("Status", exact=True).select_option("resolved")
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=alert-row]')]"
                           ".every(r => r.dataset.status === 'resolved')")
    assert row(page, stack.shared["baseline"][1]["alert_id"]).is_visible()
    assert row(page, stack.shared["baseline"][0]["alert_id"]).count() == 0
    assert "status=resolved" in page.url
    page.get_by_label("Status", exact=True).select_option("")
    page.get_by_label("Feeder", exact=True).fill("no-such-feeder")
    page.get_by_test_id("board-empty").wait_for()
    assert count(page, "open") == 0
    page.get_by_role("button", name="Clear filters").click()
    row(page, stack.shared["baseline"][0]["alert_id"]).wait_for()

    page.get_by_test_id("live-status").and_(page.locator('[data-state="live"]')).wait_for()

    # signing out ends the session: the sign-in form again, and the API refuses the old cookie
    session.sign_out()
    page.get_by_label("Token or password").wait_for()
    assert session.request.get("/api/me").status == 401


def test_an_alert_produced_to_kafka_appears_on_the_board_without_a_reload(stack, sign_in, record_property):
    page = sign_in(OPERATOR).page
    row(page, stack.shared["baseline"][0]["alert_id"]).wait_for()
    page.get_by_test_id("live-status").and_(page.locator('[data-state="live"]')).wait_for()
    mark_document(page)
    open_before = count(page, "open")

    alert = alert_record(f"overvoltage:feeder:{FEEDER}:{uuid.uuid4().hex[:6]}", kind="overvoltage",
                         severity="warning", scope=("feeder", FEEDER))
    started = time.monotonic()
    stack.send(ALERTS, alert["alert_id"], alert)
    row(page, alert["alert_id"]).wait_for(timeout=15_000)
    latency = time.monotonic() - started
    record_property("live_update_latency_s", round(latency, 3))
    on_store = "GRIDWATCH_DATABASE_URL" in stack.env  # test_console_store_browser.py runs this test too
    print(f"\nlive update{' (console on the history store)' if on_store else ''}: produced to "
          f"'{stack.topic(ALERTS)}' -> visible on the board in {latency:.3f} s")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"e2e-live-latency{'-store' if on_store else ''}.json").write_text(
        json.dumps({"produce_to_visible_s": round(latency, 3)}) + "\n")

    new_row = row(page, alert["alert_id"])
    assert "changed" in new_row.get_attribute("class")  # highlighted while it is new
    assert new_row.get_by_test_id("status-badge").inner_text() == "open"
    page.wait_for_function(f"() => document.getElementById('count-open').textContent === '{open_before + 1}'")

    # a later record of the same alert changes its row in place
    resolved = {**alert, "status": "resolved", "resolved_at": now_iso()}
    stack.send(ALERTS, alert["alert_id"], resolved)
    new_row.and_(page.locator('[data-status="resolved"]')).wait_for(timeout=15_000)
    assert new_row.get_by_test_id("status-badge").inner_text() == "resolved"
    page.wait_for_function(f"() => document.getElementById('count-open').textContent === '{open_before}'")
    assert_not_reloaded(page)


def test_an_operator_acknowledges_an_alert_and_the_change_reaches_the_alerts_topic(stack, sign_in):
    finding = stack.shared["finding"]
    aid = finding["alert_id"]
    session = sign_in(OPERATOR)
    page = session.page
    # the worker turns the finding into an alert record (it may still be starting)
    row(page, aid).wait_for(timeout=180_000)
    mark_document(page)
    row(page, aid).locator("td").nth(3).click()
    wait_for_detail(page, aid)
    detail = page.get_by_test_id("detail")
    assert "undervoltage" in detail.get_by_test_id("detail-title").inner_text().lower()
    assert detail.get_by_test_id("status-badge").first.inner_text() == "open"
    facts = detail.get_by_test_id("detail-facts").inner_text()
    assert f"transformer {TRANSFORMER}" in facts and FEEDER in facts

    # evidence picture, timeline, customers with the messages the worker sent them
    page.wait_for_function("() => { const i = document.querySelector('[data-testid=evidence-img]');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    assert detail.get_by_test_id("timeline-item").first.is_visible()
    for c in CUSTOMERS:
        detail.locator(f'[data-testid="customer-row"][data-customer-id="{c["customer_id"]}"]').wait_for()
    detail.locator('[data-testid="notification"][data-status="sent"], '
                   '[data-testid="notification"][data-status="delivered"]').first.wait_for(timeout=120_000)
    detail.locator('[data-testid="timeline-item"][data-event="notified"]').wait_for()

    # acknowledge with a reason, through the small form
    detail.get_by_role("button", name="Acknowledge").first.click()
    form = page.get_by_test_id("form-acknowledge")
    assert form.is_visible()
    form.get_by_label("Reason").fill("crew dispatched to T-E2E1")
    form.get_by_role("button", name="Acknowledge").click()
    page.get_by_test_id("action-status").get_by_text("Acknowledgement sent").wait_for()

    actions = stack.read(ALERT_ACTIONS, lambda ps: any(k == aid for k, _ in ps), timeout=30)
    action = next(v for k, v in actions if k == aid)
    assert {k: action[k] for k in ("action", "alert_id", "author", "reason")} == {
        "action": "acknowledge", "alert_id": aid, "author": "olga", "reason": "crew dispatched to T-E2E1"}

    alerts = stack.read(ALERTS, lambda ps: any(k == aid and v["status"] == "acknowledged" for k, v in ps),
                        timeout=60)
    acked = next(v for k, v in alerts if k == aid and v["status"] == "acknowledged")
    assert acked["acknowledged_by"] == "olga" and acked["ack_reason"] == "crew dispatched to T-E2E1"

    # the page follows: the detail's badge and timeline, then the board's row, all without a reload
    detail.get_by_test_id("detail-badges").get_by_text("acknowledged").wait_for(timeout=15_000)
    ack_item = detail.locator('[data-testid="timeline-item"][data-event="acknowledged"]')
    assert "olga" in ack_item.inner_text() and "crew dispatched" in ack_item.inner_text()
    assert detail.get_by_role("button", name="Acknowledge").first.is_disabled()
    page.get_by_test_id("back-to-board").click()
    page.wait_for_url(stack.url + "/")
    assert row(page, aid).get_by_test_id("status-badge").inner_text() == "acknowledged"
    assert_not_reloaded(page)


def test_an_operator_silences_the_scope_of_an_alert_and_ends_the_silence(stack, sign_in):
    aid = stack.shared["finding"]["alert_id"]
    page = sign_in(OPERATOR).page
    page.goto("/alerts/" + quote(aid, safe=""))
    wait_for_detail(page, aid)
    page.get_by_role("button", name="Silence this scope").click()
    form = page.get_by_test_id("form-silence")
    form.get_by_label("Scope").select_option(f"feeder:{FEEDER}")
    form.get_by_label("For").select_option("1h")
    assert form.get_by_label("Only alerts of this kind").is_checked()
    form.get_by_label("Reason").fill("planned work WO-17")
    form.get_by_role("button", name="Add silence").click()
    page.get_by_test_id("action-status").get_by_text("added for feeder:" + FEEDER).wait_for()

    silences = stack.read("gridwatch.silences", lambda ps: any(v.get("reason") == "planned work WO-17"
                                                                for _, v in ps), timeout=30)
    sid, record = next((k, v) for k, v in silences if v.get("reason") == "planned work WO-17")
    assert record["scope"] == {"level": "feeder", "id": FEEDER} and record["kinds"] == ["undervoltage"]
    assert record["author"] == "olga" and record["expired_at"] is None

    item = page.locator(f'[data-testid="silence"][data-silence-id="{sid}"]')
    item.wait_for()
    assert "planned work WO-17" in item.inner_text()
    item.get_by_role("button", name="End the silence").click()
    item.wait_for(state="detached")
    ended = stack.read("gridwatch.silences", lambda ps: any(k == sid and v.get("expired_by") for k, v in ps),
                       timeout=30)
    assert next(v for k, v in ended if k == sid and v.get("expired_by"))["expired_by"] == "olga"


def test_a_viewer_sees_no_actions_and_the_api_refuses_them(stack, sign_in, browser):
    aid = stack.shared["baseline"][0]["alert_id"]
    viewer = sign_in(VIEWER)
    page = viewer.page
    assert page.get_by_test_id("user-role").inner_text().lower() == "viewer"
    row(page, aid).wait_for()
    row(page, aid).click()
    wait_for_detail(page, aid)
    assert page.get_by_test_id("viewer-note").is_visible()
    for name in ("Acknowledge", "Resolve", "Silence this scope"):
        assert page.get_by_role("button", name=name).count() == 0
    assert page.get_by_test_id("actions").count() == 0
    assert page.get_by_test_id("silence-expire").count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "viewer-alert-detail.png"), full_page=True)

    # the viewer's own session, with its CSRF token, is still refused by the API
    csrf = viewer.request.get("/api/me").json()["csrf"]
    assert csrf
    refused = viewer.request.post(api_path(aid) + "/acknowledge", data=json.dumps({"reason": "not mine"}),
                                  headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})
    assert refused.status == 403, refused.text()
    refused = viewer.request.post("/api/silences", data=json.dumps(
        {"scope": f"feeder:{FEEDER}", "kinds": None, "duration": "2h", "reason": "no"}),
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})
    assert refused.status == 403, refused.text()

    # an operator's session without the CSRF header is refused too
    operator = sign_in(OPERATOR)
    no_csrf = operator.request.post(api_path(aid) + "/acknowledge", data=json.dumps({"reason": "x"}),
                                    headers={"Content-Type": "application/json"})
    assert no_csrf.status == 403, no_csrf.text()

    # no credentials at all: 401, with the sign-in form for a page
    anonymous = browser.new_context(base_url=stack.url)
    try:
        page_401 = anonymous.request.get("/")
        assert page_401.status == 401
        assert 'name="secret"' in page_401.text() and 'action="/login"' in page_401.text()
        assert anonymous.request.get("/api/alerts").status == 401
        assert anonymous.request.get(api_path(aid)).status == 401
        assert anonymous.request.post(api_path(aid) + "/acknowledge", data=json.dumps({"reason": "x"}),
                                      headers={"Content-Type": "application/json"}).status == 401
    finally:
        anonymous.close()


def test_replies_and_figures_follow_the_stream(stack, sign_in):
    page = sign_in(OPERATOR).page
    page.get_by_test_id("figures-timing").wait_for()
    assert page.get_by_test_id("false-alarm-rate").is_visible()
    mark_document(page)
    outage = stack.shared["baseline"][0]
    fid = f"fb-{uuid.uuid4().hex[:10]}"
    customer = OUTAGE_CUSTOMERS[0]["customer_id"]
    reply = {"feedback_id": fid, "customer_id": customer, "from_masked": "+44******0003",
             "channel": "sms", "provider_message_id": f"SM{uuid.uuid4().hex}", "body": "4 thanks for the warning",
             "intent": "rating", "rating": 4, "alert_id": outage["alert_id"], "opted_out": False,
             "received_at": now_iso(), "created_at": now_iso()}
    stack.send(FEEDBACK, customer, reply)
    item = page.locator(f'[data-testid="feedback-item"][data-feedback-id="{fid}"]')
    item.wait_for(timeout=15_000)
    assert "thanks for the warning" in item.inner_text()
    page.locator('[data-testid="satisfaction-row"][data-kind="outage"]').wait_for(timeout=15_000)
    # the reply links to its alert, whose detail lists it
    item.get_by_role("link").click()
    wait_for_detail(page, outage["alert_id"])
    page.get_by_test_id("detail-feedback").get_by_text("thanks for the warning").wait_for()
    assert_not_reloaded(page)


def test_screenshots_of_the_board_and_of_an_alert_with_its_evidence(stack, sign_in):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = sign_in(OPERATOR).page
    aid = stack.shared["finding"]["alert_id"]
    row(page, aid).wait_for(timeout=180_000)
    page.wait_for_timeout(2600)  # let the highlight of fresh rows fade
    board = SCREENSHOTS / "board.png"
    page.screenshot(path=str(board), full_page=True)

    page.goto("/alerts/" + quote(aid, safe=""))
    wait_for_detail(page, aid)
    page.wait_for_function("() => { const i = document.querySelector('[data-testid=evidence-img]');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    page.get_by_test_id("notification").first.wait_for(timeout=120_000)
    page.get_by_role("button", name="Resolve").click()  # show the action form with its "no fault" box
    assert page.get_by_label("No fault found (a false alarm)").is_visible()
    detail = SCREENSHOTS / "alert-detail.png"
    page.screenshot(path=str(detail), full_page=True)
    for path in (board, detail):
        assert path.stat().st_size > 10_000, path


def test_an_operator_resolves_an_alert_as_no_fault_and_the_false_alarm_rate_follows(stack, sign_in):
    aid = stack.shared["finding"]["alert_id"]
    page = sign_in(OPERATOR).page
    page.goto("/alerts/" + quote(aid, safe=""))
    wait_for_detail(page, aid)
    page.get_by_test_id("figures-timing").wait_for()
    before = page.get_by_test_id("false-alarm-rate").inner_text()
    mark_document(page)
    page.get_by_role("button", name="Resolve").click()
    form = page.get_by_test_id("form-resolve")
    form.get_by_label("Reason").fill("meter firmware misread, voltage was fine")
    form.get_by_label("No fault found (a false alarm)").check()
    form.get_by_role("button", name="Resolve").click()
    page.get_by_test_id("action-status").get_by_text("Resolution sent").wait_for()

    alerts = stack.read(ALERTS, lambda ps: any(k == aid and v["status"] == "resolved" for k, v in ps), timeout=60)
    resolved = next(v for k, v in alerts if k == aid and v["status"] == "resolved")
    assert resolved["no_fault"] is True and resolved["resolved_by"] == "olga"

    page.get_by_test_id("detail-badges").get_by_text("no fault").wait_for(timeout=15_000)
    assert page.get_by_role("button", name="Resolve").is_disabled()
    page.wait_for_function("(before) => document.querySelector('[data-testid=false-alarm-rate]').textContent"
                           " !== before", arg=before, timeout=15_000)
    assert "1 of " in page.get_by_test_id("false-alarm-rate").inner_text()
    assert_not_reloaded(page)


def test_no_console_errors_or_page_errors(stack):
    assert stack.pages_watched >= 8
    assert stack.problems == [], "\n".join(stack.problems)
