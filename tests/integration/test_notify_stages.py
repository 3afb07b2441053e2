"""Notification stages on a real broker, driven by alert records published straight onto `alerts`."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def alert(alert_id, kind, status, meter, cid, **evidence):
    level, scope = ("transformer", "T0001") if kind == "outage" else ("meter", meter)
    return {"alert_id": alert_id, "kind": kind, "severity": "critical" if kind == "outage" else "warning",
            "status": status, "scope": {"level": level, "id": scope}, "meter_ids": [meter], "customer_ids": [cid],
            "started_at": "2026-07-01T18:00:00Z", "detected_at": "2026-07-01T18:03:00Z",
            "resolved_at": "2026-07-01T18:45:00Z" if status == "resolved" else None, "evidence": evidence}


def test_a_bill_alert_is_held_while_the_customer_has_no_power(pipeline):
    """Inhibit: during the customer's outage the bill alert is recorded as deferred; when power is back the
    customer gets the restoration message and then the bill alert, once."""
    from devtools.simulator import SimConfig, Simulator

    cust = next(c for c in Simulator(SimConfig(seed=3, feeders=1, transformers_per_feeder=1,
                                               meters_per_transformer=4, regions="EU")).customers()
                if not c["opted_out"])
    cust["preferences"]["quiet_hours"] = ["00:00", "00:00"]  # no quiet hours: only the outage can hold it
    cid, meter = cust["customer_id"], cust["meter_id"]
    pipeline.send("customers", cid, cust)
    pipeline.read("gridwatch.meter-directory", lambda rs: len(rs) >= 1)

    out_id = "outage:transformer:T0001:2026-07-01T18:00:00Z"
    bill_id = f"bill_spike:meter:{meter}:2026-07-01T00:00:00Z"
    pipeline.send("alerts", out_id, alert(out_id, "outage", "open", meter, cid, meters_out=1))
    pipeline.read("notifications", lambda rs: any(r["alert_id"] == out_id and r["status"] == "sent" for r in rs))
    pipeline.send("alerts", bill_id, alert(bill_id, "bill_spike", "open", meter, cid, projected_amount=412.0,
                                           usual_amount=298.0, currency="GBP", pct_above=38.0,
                                           driver="night-time base load up 45 %"))
    notes = pipeline.read("notifications", lambda rs: any(r["alert_id"] == bill_id for r in rs))
    (held,) = [n for n in notes if n["alert_id"] == bill_id]
    assert (held["status"], held["reason"]) == ("deferred", f"held: in outage {out_id}")
    assert len(pipeline.sandbox_messages()) == 1  # the outage notice only

    pipeline.send("alerts", out_id, alert(out_id, "outage", "resolved", meter, cid, still_out_customer_ids=[]))
    notes = pipeline.read("notifications", lambda rs: any(r["alert_id"] == bill_id and r["status"] == "sent"
                                                          for r in rs))
    notes = [n for n in pipeline.settle("notifications") if n["status"] != "delivered"]
    assert [(n["alert_id"], n["status"]) for n in notes] == [
        (out_id, "sent"), (bill_id, "deferred"), (out_id, "sent"), (bill_id, "sent")]
    assert notes[3]["notification_id"] == held["notification_id"] and "GBP 412" in notes[3]["body"]
    assert len(pipeline.sandbox_messages()) == 3  # notice, "power is back", the bill alert
