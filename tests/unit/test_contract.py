"""The wire contract: the issue's examples pass, and bad input is refused with a message naming the field."""

from __future__ import annotations

import json

import pytest

from gridwatch import contract
from gridwatch.contract import ContractError, decode_customer, decode_event, decode_readings, parse_ts

READING = {"meter_id": "M000123", "ts": "2026-07-01T08:15:00Z", "interval_s": 900, "kwh": 0.42, "v_avg": 229.8,
           "v_min": 221.0, "v_max": 236.1, "quality": "actual"}
CUSTOMER = {"customer_id": "C000123", "meter_id": "M000123", "transformer_id": "T0042", "feeder_id": "F007",
            "segment": "residential", "phone": "+8613800138000", "language": "zh-CN",
            "timezone": "Asia/Shanghai", "nominal_voltage": 220, "bill_cycle_day": 1,
            "tariff": {"currency": "CNY", "price_per_kwh": 0.56}, "opted_out": False,
            "preferences": {"quiet_hours": ["22:00", "08:00"], "bill_alert_pct": 30}}


def b(v) -> bytes:
    return json.dumps(v).encode()


@pytest.mark.parametrize("name", contract.SCHEMA_NAMES)
def test_every_published_schema_compiles(name):
    assert contract.validator(name) is not None
    assert contract.schema(name)["$schema"].startswith("http://json-schema.org/draft-07")


def test_one_reading_or_an_array_of_one_meter():
    one = decode_readings(b"M000123", b(READING))
    many = decode_readings(b"M000123", b([READING, {**READING, "ts": "2026-07-01T08:30:00+08:00"}]))
    assert one[0].ts == parse_ts("2026-07-01T08:15:00Z") and one[0].v_avg == 229.8
    assert [r.ts - one[0].ts for r in many] == [0, -8 * 3600 + 900]


def test_optional_fields_default_and_may_be_null():
    (r,) = decode_readings(b"M1", b({"meter_id": "M1", "ts": "2026-07-01T08:15:00Z", "v_avg": None}))
    assert (r.interval_s, r.kwh, r.v_avg, r.quality) == (900, None, None, "actual")


@pytest.mark.parametrize("payload, fragment", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "UTF-8"),
    (b([]), "empty array"),
    (b({"meter_id": "M000123"}), "ts"),
    (b({**READING, "ts": "2026-07-01T08:15:00"}), "ts"),             # no offset
    (b({**READING, "ts": "2026-02-30T08:15:00Z"}), "ts"),             # no such day
    (b({**READING, "kwh": "0.4"}), "kwh"),
    (b({**READING, "quality": "guessed"}), "quality"),
    (b([READING, {**READING, "meter_id": "M9"}]), "[1] meter_id"),   # array must be one meter's
    (b({**READING, "meter_id": "M9"}), "does not match the message key"),
])
def test_bad_readings_are_refused_with_a_reason(payload, fragment):
    with pytest.raises(ContractError) as err:
        decode_readings(b"M000123", payload)
    assert fragment in str(err.value)


def test_events_keep_unknown_types():
    ev = decode_event(b"M1", b({"meter_id": "M1", "ts": "2026-07-01T08:15:00Z", "type": "tamper_alarm"}))
    assert ev.type == "tamper_alarm"
    with pytest.raises(ContractError):
        decode_event(b"M1", b({"meter_id": "M1", "ts": "2026-07-01T08:15:00Z"}))


def test_customer_example_validates_and_a_null_value_deletes():
    assert decode_customer(b"C000123", b(CUSTOMER))["tariff"]["currency"] == "CNY"
    assert decode_customer(b"C000123", None) is None
    minimal = {k: v for k, v in CUSTOMER.items() if k not in ("preferences", "bill_cycle_day", "opted_out", "tariff")}
    assert decode_customer(b"C000123", b(minimal))["preferences"] == {"quiet_hours": ["22:00", "08:00"],
                                                                      "bill_alert_pct": 30}


@pytest.mark.parametrize("field, value", [("phone", "13800138000"), ("segment", "farm"),
                                          ("nominal_voltage", 0), ("preferences", {"quiet_hours": ["25:00", "08:00"]})])
def test_bad_customers_are_refused(field, value):
    with pytest.raises(ContractError):
        decode_customer(b"C000123", b({**CUSTOMER, field: value}))


def test_output_records_validate_against_their_schemas():
    alert = {"alert_id": "a", "kind": "undervoltage", "severity": "warning", "status": "open",
             "scope": {"level": "transformer", "id": "T1"}, "meter_ids": ["M1"], "customer_ids": ["C1"],
             "started_at": "2026-07-01T10:15:00Z", "detected_at": "2026-07-01T10:30:00Z", "resolved_at": None,
             "evidence": {}}
    contract.check("alerts", alert)
    with pytest.raises(ContractError):
        contract.check("alerts", {**alert, "status": "closed"})
