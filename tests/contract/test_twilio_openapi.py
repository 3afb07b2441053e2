"""Our Twilio requests, checked against Twilio's own OpenAPI description rather than only our sandbox.

Stoplight Prism serves a mock from the official 2010-04-01 spec (``../shared/twilio``) and validates every
request against it: auth, required fields, field formats. The real ``twilio`` client sends through
``TwilioSms`` exactly as in production, only the base URL differs. Prism and the spec are not dependencies
of gridwatch: ``make contract-deps`` installs Prism; without it (or the spec) these tests skip with the
reason, except under CI=true, where ``.ci/run`` provides both and a skip would hide a broken check.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from notifiers.base import NotifierError
from notifiers.sms import TwilioSms
from tests.ci import unavailable

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("GRIDWATCH_SHARED") or REPO.parent / "shared")
SPEC = SHARED / "twilio" / "twilio_api_v2010.json"
PRISM = Path(os.environ.get("GRIDWATCH_PRISM") or REPO / ".run" / "node" / "node_modules" / ".bin" / "prism")

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "contract-test-token"


@pytest.fixture(scope="module")
def prism_url(tmp_path_factory):
    if not SPEC.exists():
        unavailable(f"Twilio's OpenAPI spec is absent ({SPEC}); it lives in the shared folder beside the repo")
    if not PRISM.exists() or shutil.which("node") is None:
        unavailable(f"Stoplight Prism is not installed at {PRISM}: run `make contract-deps` (needs Node.js)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("prism") / "prism.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(SPEC)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while b"Prism is listening" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Prism did not start:\n{log.read_text(errors='replace')[-2000:]}", pytrace=False)
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def send(sms: TwilioSms, to: str, body: str):
    async def go():
        try:
            return await sms.send(to, body)
        finally:
            await sms.close()

    return asyncio.run(go())


def test_a_notice_from_a_sender_number_matches_the_spec(prism_url):
    sms = TwilioSms(SID, TOKEN, from_number="+15005550006", base_url=prism_url,
                    validity_period_s=3600, status_callback="https://gridwatch.example/twilio/status")
    delivery = send(sms, "+8613800138000", "【GridWatch】检测到您所在区域电压偏低。回复TD退订")
    assert delivery.provider_message_id.startswith("SM")
    assert delivery.status  # the spec's example status


def test_a_notice_through_a_messaging_service_matches_the_spec(prism_url):
    sms = TwilioSms(SID, TOKEN, messaging_service_sid="MG" + "0123456789abcdef" * 2, base_url=prism_url)
    assert send(sms, "+447700900123", "GridWatch: Low voltage in your area. Reply STOP to opt out")\
        .provider_message_id.startswith("SM")


def test_what_the_spec_refuses_is_a_permanent_error_for_us(prism_url):
    """A malformed Messaging Service SID breaks the spec's pattern: Prism answers 422, never retried."""
    sms = TwilioSms(SID, TOKEN, messaging_service_sid="MG123", base_url=prism_url)
    with pytest.raises(NotifierError) as err:
        send(sms, "+8613800138000", "x")
    assert err.value.retryable is False and err.value.maybe_sent is False
    assert TOKEN not in str(err.value)
