"""Provider faults on the real path: broker, worker, the real twilio client and the SMS sandbox with a
different fault for each customer's number. Each customer gets exactly one SMS and one ``sent`` record.

(Each fault also has a unit test: tests/unit/test_sms.py for what the client sees, tests/unit/test_path.py
for what the notification path decides.)
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.integration.test_pipeline import PrefixedSink

pytestmark = pytest.mark.integration


def scenario():
    from devtools.simulator import SimConfig, Simulator

    return Simulator(SimConfig(seed=5, feeders=1, transformers_per_feeder=1, meters_per_transformer=6,
                               regions="CN", hours=12, faults=("transformer_undervoltage:T0001@+4h/3h",)))


PHONES = {c["customer_id"]: c["phone"] for c in scenario().customers()}
FAULTS = {
    "C000001": ["timeout:40x1"],                     # created, never answered: the client times out (15 s)
    "C000003": ["created-5xx:500x1", "list-lag:6"],  # created, answered 500, listed only 6 s later
    "C000004": ["created-5xx:502x1", "list-error:500x3"],  # the lookup fails 3 times before it answers
    "C000006": ["timeout:40x1", "smart-encoding"],   # stored with full-width punctuation folded
}


@pytest.mark.sandbox_args(*[arg for cid, faults in FAULTS.items() for f in faults
                            for arg in ("--fault", f"{PHONES[cid]}={f}")])
def test_provider_faults_give_neither_a_duplicate_nor_a_loss(pipeline):
    from devtools.simulator import publish

    sim = scenario()
    customers = {c["customer_id"]: c for c in sim.customers()}
    opted_in = {c for c in customers if not customers[c]["opted_out"]}
    assert set(FAULTS) <= opted_in
    publish(sim.timed_records(), PrefixedSink(pipeline), progress=False)

    notes = pipeline.read("notifications", lambda rs: {n["customer_id"] for n in rs if n["status"] == "sent"}
                          >= opted_in, timeout=300)
    notes = pipeline.settle("notifications")
    sms = pipeline.sandbox_messages()

    # one SMS per customer at the provider, whatever its number's fault
    assert sorted(m["to"] for m in sms) == sorted(customers[c]["phone"] for c in opted_in)
    # one `sent` record per provider message, none failed
    sent = [n for n in notes if n["status"] == "sent"]
    assert Counter(n["provider_message_id"] for n in sent) == Counter({m["sid"]: 1 for m in sms})
    assert not [n for n in notes if n["status"] == "failed"]
    by_customer = {n["customer_id"]: n for n in sent}
    for cid in FAULTS:  # an unknown outcome was settled with the provider, not resent
        assert by_customer[cid]["reason"].startswith("reconciled"), by_customer[cid]
    # C000003: not listed at first, so the claim stayed and was settled on a later pass
    assert any(n["customer_id"] == "C000003" and n["status"] == "deferred" and "unsettled" in n["reason"]
               for n in notes)
    smart = next(m for m in sms if m["to"] == PHONES["C000006"])
    assert smart["body"] != by_customer["C000006"]["body"]  # the provider changed it; it still matched
