"""The webhook channel: where it may post, whose secret signs, the signed timestamp, and what of a customer's
answer is kept."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gridwatch.config import Settings
from notifiers.webhook import (SIGNATURE_HEADER, TIMESTAMP_HEADER, TargetRefused, WebhookNotifier, _GuardedResolver,
                               customer_secret, parse_allow, refused_address, sign, verify_signature)
from tests.unit.test_channels import LOCAL, SECRET, error_of, receiver, run

PAYLOAD = {"customer_id": "C000123", "text": "Low voltage"}


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:9/x", "loopback"), ("http://127.1.2.3/x", "loopback"), ("http://localhost:9/x", "loopback"),
    ("http://[::1]:9/x", "loopback"), ("http://[::ffff:127.0.0.1]:9/x", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"), ("http://[fe80::1]/x", "link-local"),
    ("http://10.0.0.5/x", "private"), ("http://172.16.3.4/x", "private"), ("http://192.168.1.1/x", "private"),
    ("http://[fd00::1]/x", "private"), ("http://0.0.0.0:9/x", "unspecified"), ("http://224.0.0.1/x", "multicast"),
    ("http://100.64.0.1/x", "not global"), ("http://240.0.0.1/x", "reserved"),
])
def test_private_loopback_and_link_local_targets_are_refused_and_nothing_is_sent(url, why):
    async def go():
        async with WebhookNotifier(SECRET) as hook:
            return await error_of(hook.send(url, "x", data=PAYLOAD, key="N-1"))

    err = run(go())
    assert not err.retryable and not err.maybe_sent and why in str(err)
    assert "/latest" not in str(err)  # the URL's path is never in the reason


def test_the_allow_list_lets_the_projects_own_sandbox_through():
    async def go():
        async with receiver() as (url, got):
            async with WebhookNotifier(SECRET) as closed:
                refused = await error_of(closed.send(url, "x", data=PAYLOAD, key="N-2"))
            async with WebhookNotifier(SECRET, allow="127.0.0.1/32, ::1") as opened:
                ok = await opened.send(url, "x", data=PAYLOAD, key="N-3")
            async with WebhookNotifier.from_settings(Settings(webhook_secret=SECRET, webhook_allow=LOCAL)) as configured:
                ok2 = await configured.send(url, "x", data=PAYLOAD, key="N-4")
            return refused, ok, ok2, got

    refused, ok, ok2, got = run(go())
    assert "loopback" in str(refused) and ok.status == ok2.status == "delivered" and len(got) == 2
    with pytest.raises(ValueError, match="GRIDWATCH_WEBHOOK_ALLOW"):
        parse_allow("127.0.0.1/32,not-a-network")


def test_every_address_of_a_name_is_checked_and_the_connection_uses_a_checked_one():
    assert refused_address("93.184.215.14") is None and refused_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c") is None
    assert refused_address("127.0.0.1", parse_allow("127.0.0.0/8")) is None

    async def go():
        resolver = _GuardedResolver(())
        try:
            with pytest.raises(TargetRefused, match="loopback"):
                await resolver.resolve("localhost", 80)  # what the connection itself resolves through
        finally:
            await resolver.close()

    run(go())


def test_each_customer_has_its_own_secret_derived_from_the_master():
    a, b = customer_secret(SECRET, "C000001"), customer_secret(SECRET, "C000002")
    assert a != b and len(a) == 64 and SECRET not in a
    assert customer_secret("another-master", "C000001") != a and customer_secret(SECRET, "C000001") == a

    async def go():
        async with receiver() as (url, got):
            async with WebhookNotifier(SECRET, allow=LOCAL) as hook:
                await hook.send(url, "x", data={"customer_id": "C000001"}, key="N-5")
                await hook.send(url, "x", data={"customer_id": "C000002"}, key="N-6")
            return got

    (raw1, h1), (raw2, h2) = run(go())
    assert verify_signature(a, raw1, h1[SIGNATURE_HEADER], h1[TIMESTAMP_HEADER])
    assert not verify_signature(a, raw2, h2[SIGNATURE_HEADER], h2[TIMESTAMP_HEADER])  # C1 cannot check C2's
    assert verify_signature(b, raw2, h2[SIGNATURE_HEADER], h2[TIMESTAMP_HEADER])


def test_the_timestamp_is_signed_and_checked_with_a_tolerance():
    body = json.dumps(PAYLOAD).encode()
    now = int(time.time())
    signature = sign("k", body, now)
    assert verify_signature("k", body, signature, str(now))
    assert not verify_signature("k", body, signature, str(now + 1))  # the timestamp is covered
    assert not verify_signature("k", body, signature, None) and not verify_signature("k", body, signature, "soon")
    old = sign("k", body, now - 301)  # a captured request replayed five minutes later
    assert not verify_signature("k", body, old, now - 301)
    assert verify_signature("k", body, old, now - 301, tolerance_s=600)
    future = sign("k", body, now + 301)
    assert not verify_signature("k", body, future, now + 301)
    assert verify_signature("k", body, sign("k", body, 1000), 1000, now=1250)


def test_the_sandbox_receiver_refuses_a_stale_signature():
    from devtools.sandbox import STATE
    from tests.unit.test_channels import sandbox

    async def go():
        import aiohttp

        async with sandbox(webhook_secret=SECRET) as (url, state):
            raw = json.dumps(PAYLOAD).encode()
            secret = customer_secret(SECRET, PAYLOAD["customer_id"])
            stale = int(time.time()) - 3600
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url}/sandbox/webhook/x", data=raw, headers={
                        SIGNATURE_HEADER: sign(secret, raw, stale), TIMESTAMP_HEADER: str(stale),
                        "Content-Type": "application/json"}) as r:
                    return r.status, state.webhooks

    status, accepted = run(go())
    assert status == 401 and accepted == []


@pytest.mark.parametrize("status", [400, 403, 500, 503])
def test_only_the_status_code_of_a_refusal_is_kept_never_the_receivers_text(status):
    async def go():
        async with receiver(status=status, answer={"error": "db password hunter2 at 10.0.0.5 for Li Wei"}) as (url, _):
            async with WebhookNotifier(SECRET, allow=LOCAL) as hook:
                return await error_of(hook.send(url, "x", data=PAYLOAD, key="N-7"))

    err = run(go())
    assert str(err).endswith(f"HTTP {status}") and "hunter2" not in str(err) and "Li Wei" not in str(err)
    assert err.status == status


def test_webhook_secret_command(monkeypatch, capsys):
    from gridwatch.cli import main

    monkeypatch.setenv("GRIDWATCH_WEBHOOK_SECRET", SECRET)
    assert main(["webhook-secret", "C000001"]) == 0
    assert capsys.readouterr().out.strip() == customer_secret(SECRET, "C000001")
    monkeypatch.delenv("GRIDWATCH_WEBHOOK_SECRET")
    assert main(["webhook-secret", "C000001"]) == 2
    assert "GRIDWATCH_WEBHOOK_SECRET" in capsys.readouterr().err
