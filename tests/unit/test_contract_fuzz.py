"""The decoders under generated input (hypothesis): every input is decoded or refused with a ContractError that
carries a reason code — never another exception — and what is decoded can be published as strict JSON."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridwatch import contract
from gridwatch.contract import ContractError, decode_customer, decode_event, decode_readings
from tests.fuzz_inputs import CUSTOMERS, EVENTS, READINGS, inputs

T0 = contract.parse_ts("2026-07-01T00:00:00Z")
NOW = contract.parse_ts("2026-12-01T00:00:00Z")
METERS = ["M000001", "M000002"]
CUSTOMER = {"customer_id": "C000001", "meter_id": "M000001", "transformer_id": "T1", "feeder_id": "F1",
            "segment": "residential", "phone": "+8613800138000", "language": "zh-CN", "timezone": "Asia/Shanghai",
            "nominal_voltage": 220}
REASONS = {"not_json", "not_finite", "invalid", "key_mismatch", "ts_out_of_range"}
DECODE = {READINGS: decode_readings, EVENTS: decode_event, CUSTOMERS: decode_customer}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(inputs(METERS, [CUSTOMER], T0, NOW, [(contract.EARLIEST_TS, T0 - 86400)]))
def test_every_generated_input_is_decoded_or_refused_with_a_reason(inp):
    try:
        out = DECODE[inp.topic](inp.key, inp.value)
    except ContractError as exc:
        assert exc.code in REASONS, (exc.code, exc)
        return
    assert inp.expect != "reject", f"accepted: {inp.why}: {inp.value[:200]!r}"
    if isinstance(out, dict):  # a customer
        contract.dumps(out)
        return
    records = out if isinstance(out, list) else [out]
    contract.dumps([{f: getattr(r, f) for f in r.__slots__} for r in records])
    for r in records:
        assert r.ts >= contract.EARLIEST_TS
        for f in ("kwh", "v_avg", "v_min", "v_max"):
            x = getattr(r, f, None)
            assert x is None or (math.isfinite(x) and 0 <= x <= 250000)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_a_contract_error(raw):
    for decode in DECODE.values():
        try:
            decode(b"M000001", raw)
        except ContractError as exc:
            assert exc.code in REASONS


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers())
def test_a_published_record_is_strict_json(x):
    if isinstance(x, float) and not math.isfinite(x):
        try:
            contract.dumps({"x": x})
        except ValueError:
            return
        raise AssertionError("NaN/Infinity published")
    assert contract.loads(contract.dumps({"x": x})) == {"x": x}
