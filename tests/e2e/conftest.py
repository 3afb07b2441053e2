"""End-to-end tests of the operations console's page in a real headless Chromium.

Everything is real: the Kafka broker (``kafka_broker``), a worker with the SMS sandbox and the webhooks
service (as the integration tests' ``pipeline``), ``gridwatch console`` with an operator and a viewer, and
Debian's Chromium driven by Playwright (``/usr/bin/chromium``; Playwright's own browser download is not
used). Without Chromium or Playwright the tests skip with the reason, except under CI=true, where that must
fail the run.

Every console message of level "error" and every uncaught page error of every page opened here is
collected; the last test of the module asserts there were none.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.ci import unavailable
from tests.prefixes import fresh_prefix

from gridwatch.config import Settings
from tests.integration.conftest import ServiceLogs, free_port

CHROMIUM = Path(os.environ.get("GRIDWATCH_CHROMIUM", "/usr/bin/chromium"))
# What makes Debian's Chromium start cleanly on a machine without outside network: no background
# connections, no component updates, no QUIC, no sandbox (the tests run as root).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
SCREENSHOTS = OUTPUT / "screenshots"

OPERATOR = ("olga", "operator", "e2e-operator-secret-7f3a")
VIEWER = ("victor", "viewer", "e2e-viewer-secret-91cd")

# the grid the tests' alerts are on: one feeder, two customers behind one transformer (the undervoltage
# alert's) and a third behind another (the outage's, so that it does not inhibit the undervoltage messages)
FEEDER, TRANSFORMER, OTHER_TRANSFORMER = "F-E2E", "T-E2E1", "T-E2E2"
ALL_CUSTOMERS = [
    {"customer_id": f"CE2E{n}", "meter_id": f"ME2E{n}", "transformer_id": TRANSFORMER if n < 3 else OTHER_TRANSFORMER,
     "feeder_id": FEEDER, "segment": "residential", "phone": f"+4470000{n:05d}", "language": "en",
     "timezone": "Europe/London", "nominal_voltage": 230, "opted_out": False,
     "preferences": {"quiet_hours": ["00:00", "00:00"]}}
    for n in (1, 2, 3)
]
CUSTOMERS, OUTAGE_CUSTOMERS = ALL_CUSTOMERS[:2], ALL_CUSTOMERS[2:]


def pytest_collection_modifyitems(session, config, items):
    """The browser tests run last, after the unit and integration tests (they are the slowest)."""
    here = Path(__file__).resolve().parent
    mine = [i for i in items if here in Path(str(i.fspath)).resolve().parents]
    if mine:
        others = [i for i in items if i not in mine]
        items[:] = others + mine


def now_iso(offset_s: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))




def http_status(url: str, headers: dict | None = None, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def undervoltage_trace(meter_id: str, minutes: int = 90) -> dict:
    """A voltage trace as the detectors attach it: 5-minute averages sinking below EN 50160's band."""
    start = time.time() - minutes * 60
    points = []
    for i in range(minutes // 5 + 1):
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i * 300))
        avg = 229.0 - max(0, i - 6) * 3.1
        points.append([ts, round(avg, 1), round(avg - 2.4, 1), round(avg + 1.9, 1)])
    return {"unit": "V", "standard": "EN 50160", "nominal": 230, "band": [207, 253], "meter_id": meter_id,
            "points": points}


def alert_record(alert_id: str, kind: str = "outage", severity: str = "critical", status: str = "open",
                 scope=("transformer", TRANSFORMER), customers=CUSTOMERS, evidence: dict | None = None) -> dict:
    started = now_iso(-600)
    return {"alert_id": alert_id, "kind": kind, "severity": severity, "status": status,
            "scope": {"level": scope[0], "id": scope[1]},
            "meter_ids": [c["meter_id"] for c in customers], "customer_ids": [c["customer_id"] for c in customers],
            "started_at": started, "detected_at": now_iso(-300),
            "resolved_at": now_iso() if status == "resolved" else None,
            "evidence": evidence or {"text": "end-to-end test alert"}}


class Stack(ServiceLogs):
    """The running services of one test module and the Kafka side of the tests."""

    def __init__(self, settings: Settings, env: dict, procs, url: str):
        from kafka import KafkaProducer

        self.settings, self.env, self.procs, self.url = settings, env, procs, url
        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all", linger_ms=0)
        #: console errors and page errors of every page opened in this module
        self.problems: list[str] = []
        self.pages_watched = 0
        self.shared: dict = {}

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def send(self, topic: str, key: str, value: dict | None) -> None:
        """Produce one JSON record and wait until the broker has it."""
        body = None if value is None else json.dumps(value).encode()
        self.producer.send(self.topic(topic), key=key.encode(), value=body).get(30)

    def read(self, topic: str, until, timeout: float = 90.0) -> list[tuple[str | None, dict]]:
        """``(key, record)`` pairs of ``topic`` from the start (tombstones left out), once ``until(pairs)`` holds."""
        return self.poll(topic, until, timeout, lambda m: None if m.value is None else
                         (m.key.decode() if m.key else None, json.loads(m.value)))



@pytest.fixture(scope="session")
def chromium() -> str:
    if not CHROMIUM.exists():
        unavailable(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        unavailable(f"Playwright for Python is not installed ({exc}): pip install playwright")
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def stack(chromium, kafka_broker, tmp_path_factory, request):
    """Topics, customers, SMS sandbox, webhooks, worker and console for one test module."""
    from devtools.demo import Processes, gridwatch_argv
    from streams.topics import create_topics

    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    sandbox_port, hook_port, console_port = free_port(), free_port(), free_port()
    settings = dataclasses.replace(
        Settings(), bootstrap_servers=kafka_broker, topic_prefix=fresh_prefix("e2e", kafka_broker), run_dir=run_dir,
        sandbox_url=f"http://127.0.0.1:{sandbox_port}", webhook_url=f"http://127.0.0.1:{hook_port}",
        twilio_account_sid=None, twilio_auth_token=None)
    create_topics(settings)
    users = ",".join(":".join(u) for u in (OPERATOR, VIEWER))
    env = {**os.environ, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix, "GRIDWATCH_RUN_DIR": str(run_dir),
           "GRIDWATCH_SANDBOX_URL": settings.sandbox_url, "GRIDWATCH_WEBHOOK_URL": settings.webhook_url,
           "KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "GRIDWATCH_CONSOLE_USERS": users, "PYTHONUNBUFFERED": "1"}
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID",
                "GRIDWATCH_CONSOLE_USERS_FILE", "GRIDWATCH_CONSOLE_URL"):
        env.pop(var, None)

    # a module with HISTORY_STORE = True runs the console on a history store of its own, filled by the projector
    admin_url = db_name = None
    if getattr(request.module, "HISTORY_STORE", False):
        from sqlalchemy.engine import make_url

        from history import server

        admin_url = request.getfixturevalue("postgres_admin_url")
        db_name = f"e2e_{uuid.uuid4().hex[:10]}"
        server.create_database(admin_url, db_name)
        env["GRIDWATCH_DATABASE_URL"] = make_url(admin_url).set(database=db_name).render_as_string(
            hide_password=False)

    procs = Processes()
    url = f"http://127.0.0.1:{console_port}"
    stack = Stack(settings, env, procs, url)
    try:
        # the customer directory and two alerts are on Kafka before the console starts: it reads them first
        for c in ALL_CUSTOMERS:
            stack.send("customers", c["customer_id"], c)
        baseline = [alert_record(f"outage:transformer:{OTHER_TRANSFORMER}:{uuid.uuid4().hex[:6]}",
                                 scope=("transformer", OTHER_TRANSFORMER), customers=OUTAGE_CUSTOMERS),
                    alert_record(f"sag:meter:ME2E2:{uuid.uuid4().hex[:6]}", kind="sag", severity="warning",
                                 status="resolved", scope=("meter", "ME2E2"), customers=CUSTOMERS[1:])]
        for a in baseline:
            stack.send("alerts", a["alert_id"], a)
        stack.shared["baseline"] = baseline

        procs.start("sandbox", gridwatch_argv("sandbox", "--port", str(sandbox_port)), env, run_dir / "sandbox.log")
        procs.start("webhooks", gridwatch_argv("webhooks", "--port", str(hook_port)), env, run_dir / "webhooks.log")
        procs.start("worker", gridwatch_argv("worker"), env, run_dir / "worker.log")
        if db_name is not None:
            procs.start("projector", gridwatch_argv("history", "project"), env, run_dir / "projector.log")
        procs.start("console", gridwatch_argv("console", "--port", str(console_port)), env, run_dir / "console.log")
        token = {"Authorization": f"Bearer {OPERATOR[2]}"}
        deadline = time.monotonic() + 120
        while True:
            stack.assert_alive()
            try:
                up = (http_status(f"{url}/api/me", token) == 200
                      and http_status(settings.sandbox_url + "/sandbox/messages") == 200
                      and http_status(settings.webhook_url + "/health") == 200)
            except OSError:
                up = False
            if up:
                break
            if time.monotonic() > deadline:
                raise AssertionError("the console, sandbox or webhooks did not start:\n" + stack.log_tail("console"))
            time.sleep(0.3)

        # an undervoltage finding with a voltage trace: the worker's lifecycle agent makes it an alert (so
        # operator actions on it come back on `alerts`), and the notification path messages its customers
        finding = alert_record(f"undervoltage:transformer:{TRANSFORMER}:{uuid.uuid4().hex[:6]}", kind="undervoltage",
                               severity="warning", evidence={
                                   "standard": "EN 50160", "extreme_v": 188.3, "band": [207, 253],
                                   "trace": undervoltage_trace(CUSTOMERS[0]["meter_id"])})
        stack.send("gridwatch.findings", finding["alert_id"], finding)
        stack.shared["finding"] = finding
        yield stack
    finally:
        stack.producer.close()
        procs.stop()
        if request.session.testsfailed:
            for name in ("console", "worker") + (("projector",) if db_name else ()):
                sys.stderr.write(f"\n--- {name}.log (tail) ---\n{stack.log_tail(name, 80)}\n")
        if db_name is not None:
            from history import server

            server.drop_database(admin_url, db_name)


@pytest.fixture(scope="module")
def browser(stack, chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # a launch without a persistent context starts from a new, empty profile directory
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Session:
    """A signed-in browser context: its page, and the context's own request client (same cookies)."""

    def __init__(self, context, page, user, signing_in: list[bool]):
        self.context, self.page, self.user = context, page, user
        self._signing_in = signing_in

    def sign_out(self) -> None:
        """Sign out with the page's button; the sign-in form it lands on comes with a 401."""
        self._signing_in[0] = True
        with self.page.expect_navigation():
            self.page.get_by_role("button", name="Sign out").click()

    @property
    def request(self):
        return self.context.request


@pytest.fixture
def sign_in(stack, browser):
    """``sign_in(user) -> Session``: a new context signed in through the console's own sign-in form."""
    contexts = []

    def watch(page, signing_in: list[bool]) -> None:
        stack.pages_watched += 1

        def on_console(msg):
            if msg.type != "error":
                return
            # the sign-in form itself comes with a 401, which the browser reports as a failed load
            where = msg.location.get("url")
            if "status of 401" in msg.text and signing_in[0] and where == stack.url + "/":
                return
            stack.problems.append(f"console error on {page.url}: {msg.text} ({msg.location})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: stack.problems.append(f"page error on {page.url}: {exc}"))

    def signed_in(user) -> Session:
        name, _role, secret = user
        context = browser.new_context(base_url=stack.url, viewport={"width": 1440, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        signing_in = [True]
        watch(page, signing_in)
        response = page.goto("/")
        assert response.status == 401
        page.get_by_label("User").fill(name)
        page.get_by_label("Token or password").fill(secret)
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").click()
        signing_in[0] = False
        page.wait_for_selector('[data-testid="user-name"]:has-text("%s")' % name)
        return Session(context, page, user, signing_in)

    yield signed_in
    for context in contexts:
        context.close()
