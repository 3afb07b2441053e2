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


@pytest.mark.parametrize("payload, reason, fragment", [
    (b'{"meter_id":"M000123","ts":"2026-07-01T08:15:00Z","v_avg":NaN}', "not_finite", "NaN"),
    (b'{"meter_id":"M000123","ts":"2026-07-01T08:15:00Z","v_avg":Infinity}', "not_finite", "Infinity"),
    (b'{"meter_id":"M000123","ts":"2026-07-01T08:15:00Z","kwh":-Infinity}', "not_finite", "Infinity"),
    (b'{"meter_id":"M000123","ts":"2026-07-01T08:15:00Z","kwh":1e400}', "not_finite", "beyond a double"),
    (b'{"meter_id":"M000123","ts":"2026-07-01T08:15:00Z","x":{"deep":[NaN]}}', "not_finite", "NaN"),
    (b'{"meter_id":"M000123","ts":"2026-07-01T08:15:00Z","v_avg":' + b"9" * 5000 + b"}", "not_json", "digits"),
    (b"[" * 100000 + b"]" * 100000, "not_json", "nested"),
    (b'{"meter_id":"\\ud800","ts":"2026-07-01T08:15:00Z"}', "not_json", "surrogate"),
    (b(READING | {"v_avg": 1500.5}), "invalid", "v_avg"),
    (b(READING | {"v_max": 10 ** 30}), "invalid", "v_max"),
    (b(READING | {"v_min": 240.0, "v_max": 230.0}), "invalid", "v_min 240.0 is above v_max"),
    (b(READING | {"kwh": 3000.0}), "invalid", "12000 kW"),                        # 3 MWh in 15 minutes
    (b(READING | {"ts": "1999-12-31T23:45:00Z"}), "ts_out_of_range", "before 2000"),
    (b(READING | {"ts": "0001-01-01T00:00:00+01:00"}), "ts_out_of_range", "before 2000"),
    (b(READING | {"ts": "２０２６-07-01T08:15:00Z"}), "invalid", "ts"),           # JSON Schema's \d is ASCII
    (b(READING | {"meter_id": "M9"}), "key_mismatch", "does not match"),
])
def test_what_cannot_be_true_is_refused_with_a_reason_code(payload, reason, fragment):
    with pytest.raises(ContractError) as err:
        decode_readings(b"M000123", payload)
    assert err.value.code == reason and fragment in str(err.value), (err.value.code, str(err.value))


def test_a_reading_at_the_limits_is_accepted():
    (r,) = decode_readings(b"M000123", b(READING | {"v_avg": 0.0, "v_min": 0.0, "v_max": 1500, "kwh": 2500.0}))
    assert (r.v_max, r.kwh) == (1500, 2500.0)                                       # 10 MW for 15 minutes


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


@pytest.mark.parametrize("field, value", [
    ("phone", "13800138000"), ("phone", "+0123456789"), ("phone", "+86 138 0013 8000"), ("phone", "+86１３８００１３８０００"), ("segment", "farm"),
    ("nominal_voltage", 0), ("nominal_voltage", 99), ("nominal_voltage", 1e9), ("nominal_voltage", 691),
    ("nominal_voltage", "220"), ("timezone", "Mars/Olympus_Mons"), ("timezone", "UTC+8"),
    ("timezone", "../../etc/passwd"), ("timezone", "asia/shanghai"), ("account_manager_phone", "call Bob"),
    ("tariff", {"currency": "CNY", "price_per_kwh": 1e6}), ("preferences", {"quiet_hours": ["25:00", "08:00"]})])
def test_bad_customers_are_refused(field, value):
    with pytest.raises(ContractError) as err:
        decode_customer(b"C000123", b({**CUSTOMER, field: value}))
    assert err.value.code == "invalid"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_a_customer_with_a_non_finite_nominal_voltage_is_refused(literal):
    text = json.dumps({**CUSTOMER, "nominal_voltage": 0}).replace('"nominal_voltage": 0', '"nominal_voltage": X')
    with pytest.raises(ContractError) as err:
        decode_customer(b"C000123", text.encode().replace(b"X", literal))
    assert err.value.code == "not_finite"


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/London", "America/New_York", "UTC", "Etc/GMT-8"])
def test_iana_time_zones_are_accepted(tz):
    assert decode_customer(b"C000123", b({**CUSTOMER, "timezone": tz}))["timezone"] == tz


def test_output_records_validate_against_their_schemas():
    alert = {"alert_id": "a", "kind": "undervoltage", "severity": "warning", "status": "open",
             "scope": {"level": "transformer", "id": "T1"}, "meter_ids": ["M1"], "customer_ids": ["C1"],
             "started_at": "2026-07-01T10:15:00Z", "detected_at": "2026-07-01T10:30:00Z", "resolved_at": None,
             "evidence": {}}
    contract.check("alerts", alert)
    with pytest.raises(ContractError):
        contract.check("alerts", {**alert, "status": "closed"})
