"""Generated inputs for the wire contract's property-based tests: what a broken or hostile producer sends.

:func:`inputs` is a hypothesis strategy of :class:`Input` — topic, key, value bytes and what must become of
it: ``reject`` (a dead letter with a contract reason, whatever the worker's state), ``ts_in_future`` (a dead
letter with that reason) or ``any`` (processed, or a dead letter with a contract reason). Valid records are
generated only where processing them cannot change what the detectors find for the known meters: readings
and events of meters that are not in the directory, and readings and events of known meters dated far
ahead of the wall clock. ``tests/unit/test_contract_fuzz.py`` runs them through the decoders,
``tests/integration/test_contract_fuzz.py`` through a running worker.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

READINGS, EVENTS, CUSTOMERS = "meter.readings", "meter.events", "customers"


@dataclass(frozen=True)
class Input:
    topic: str
    key: bytes | None
    value: bytes | None
    expect: str  # reject | ts_in_future | any
    why: str


def _iso(epoch: int, offset_h: int = 0) -> str:
    from datetime import timedelta

    tz = timezone(timedelta(hours=offset_h))
    return datetime.fromtimestamp(epoch, tz).isoformat()


def _j(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", errors="surrogatepass")


# values that are never a valid number for a measurement, a voltage or an id
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
JUNK_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
JUNK = st.recursive(JUNK_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)
BAD_VOLT = st.one_of(NON_FINITE, st.floats(max_value=-0.001, allow_nan=False, allow_infinity=False),
                     st.floats(min_value=1500.01, allow_nan=False, allow_infinity=False),
                     st.integers(min_value=1501, max_value=10**40), st.text(max_size=8),
                     st.lists(st.integers(), max_size=2), st.booleans())
BAD_TS = st.one_of(
    st.sampled_from(["yesterday", "", "2026-07-01", "2026-07-01T08:15:00", "2026-02-30T08:15:00Z",
                     "2026-07-01T24:00:00Z", "2026-07-01T08:15:00+25:00", "1999-12-31T23:59:59Z",
                     "0001-01-01T00:00:00+01:00", "1970-01-01T00:00:00Z", "2026-07-01 08:15:00Z",
                     "２０２６-07-01T08:15:00Z", "2026-07-01T08:15:00.Z"]),
    st.integers(), st.floats(allow_nan=True), st.none(), st.text(max_size=30))
UNICODE_ID = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24)


READING_FAULTS = st.one_of(
    st.tuples(st.sampled_from(["v_avg", "v_min", "v_max"]), BAD_VOLT),
    st.tuples(st.just("kwh"), st.one_of(NON_FINITE, st.floats(max_value=-0.001), st.integers(10**6, 10**40),
                                        st.text(max_size=4))),
    st.tuples(st.just("ts"), BAD_TS),
    st.tuples(st.just("interval_s"), st.one_of(st.integers(max_value=0), st.integers(min_value=86401),
                                               st.floats(0.5, 99.5).filter(lambda x: not x.is_integer()), NON_FINITE, st.text(max_size=3))),
    st.tuples(st.just("quality"), st.one_of(st.text(max_size=10).filter(lambda q: q not in ("actual", "estimated")),
                                            st.integers())),
    st.tuples(st.just("meter_id"), st.one_of(st.just(""), st.integers(), st.none(), st.lists(st.text()),
                                             st.text(min_size=65, max_size=80))),
    st.tuples(st.just("v_min>v_max"), st.just(None)),
    st.tuples(st.just("-missing"), st.sampled_from(["meter_id", "ts"])),
)

CUSTOMER_FAULTS = st.one_of(
    st.tuples(st.just("timezone"), st.one_of(st.sampled_from(["Mars/Olympus_Mons", "UTC+8", "../../etc/passwd",
                                                              "Asia/Shanghai ", "asia/shanghai", ""]),
                                             st.integers(), st.none())),
    st.tuples(st.just("nominal_voltage"), st.one_of(NON_FINITE, st.floats(max_value=99.9),
                                                    st.floats(min_value=690.1), st.integers(691, 10**40),
                                                    st.just("220"), st.none())),
    st.tuples(st.just("phone"), st.one_of(st.sampled_from(["13800138000", "+0123456789", "+1 555 0100",
                                                           "+86１３８００１３８０００", "+1234", ""]),
                                          st.integers())),
    st.tuples(st.just("tariff"), st.one_of(st.builds(lambda p: {"currency": "CNY", "price_per_kwh": p},
                                                     st.one_of(NON_FINITE, st.floats(min_value=1000.5))),
                                           st.just({"currency": "yuan", "price_per_kwh": 0.5}))),
    st.tuples(st.just("segment"), st.text(max_size=12).filter(
        lambda s: s not in ("residential", "commercial", "industrial"))),
    st.tuples(st.just("customer_id"), st.just("C-someone-else")),
)


def reading(meter: str, ts: int, **kw) -> dict:
    return {"meter_id": meter, "ts": _iso(ts), "interval_s": 900, "kwh": 0.3, "v_avg": 221.0, "v_min": 219.0,
            "v_max": 223.0, "quality": "actual", **kw}


@st.composite
def broken_reading(draw, meters: list[str], t0: int) -> Input:
    """A reading of a known meter with one field broken (or a broken array): always refused."""
    meter = draw(st.sampled_from(meters))
    good = reading(meter, t0 + 900 * draw(st.integers(0, 40)))
    field, bad = draw(READING_FAULTS)
    if field == "v_min>v_max":
        good.update(v_min=230.0, v_max=220.0)
    elif field == "-missing":
        del good[bad]
    else:
        good[field] = bad
    value = draw(st.sampled_from(["one", "array", "array-of-good-and-bad"]))
    body = good if value == "one" else [good] if value == "array" else [reading(meter, t0), good]
    return Input(READINGS, meter.encode(), _j(body), "reject", f"reading with {field}={bad!r}")


@st.composite
def shapeless(draw, topic: str, keys: list[str]) -> Input:
    """Not a record at all: bytes, other JSON, nesting, giant numbers, NaN and Infinity literals."""
    # (Kafka itself refuses a message without a key on a compacted topic such as customers, and one with
    # neither key nor value)
    key = draw(st.one_of(st.sampled_from(keys).map(str.encode), st.binary(min_size=1, max_size=8),
                         st.none() if topic != CUSTOMERS else st.nothing()))
    kind = draw(st.sampled_from(["bytes", "json", "deep", "bigint", "bigfloat", "literal", "empty", "surrogate"]))
    if kind == "bytes":
        value = draw(st.binary(max_size=64))
    elif kind == "json":
        value = _j(draw(JUNK))
    elif kind == "deep":
        depth = draw(st.sampled_from([50, 999, 1001, 5000, 100_000]))
        value = (b"[" * depth) + (b"]" * depth)
    elif kind == "bigint":
        value = b'{"meter_id":"M1","ts":"2026-07-01T00:00:00Z","v_avg":' + b"9" * draw(st.integers(400, 6000)) + b"}"
    elif kind == "bigfloat":
        value = b'{"meter_id":"M1","ts":"2026-07-01T00:00:00Z","kwh":1e' + str(draw(st.integers(309, 99999))).encode() + b"}"
    elif kind == "literal":
        value = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b'{"v_avg":NaN}', b"[Infinity]", b"null",
                                      b"true", b"0", b'""']))
    elif kind == "surrogate":
        value = b'{"meter_id":"\\ud800","ts":"2026-07-01T00:00:00Z"}'
    else:
        value = draw(st.sampled_from([b"", None])) if topic != CUSTOMERS and key is not None else b""
    return Input(topic, key, value, "reject", f"{kind} on {topic}")


@st.composite
def broken_customer(draw, customers: list[dict]) -> Input:
    """A known customer's record with one field that cannot be true: refused, the previous record stays."""
    cust = dict(draw(st.sampled_from(customers)))
    key = cust["customer_id"].encode()
    field, bad = draw(CUSTOMER_FAULTS)
    cust[field] = bad
    return Input(CUSTOMERS, key, _j(cust), "reject", f"customer with {field}={bad!r}")


@st.composite
def far_future(draw, meters: list[str], now: int) -> Input:
    """A known meter's reading, array or event dated after the wall clock (a wrong clock): ts_in_future."""
    meter = draw(st.sampled_from(meters))
    ts = now + draw(st.integers(86400, 70 * 365 * 86400)) // 900 * 900
    off = draw(st.integers(-12, 14))
    if draw(st.booleans()):
        n = draw(st.integers(1, 4))
        body = [reading(meter, ts + 900 * i) for i in range(n)]
        body = [{**r, "ts": _iso(ts + 900 * i, off)} for i, r in enumerate(body)]
        return Input(READINGS, meter.encode(), _j(body if n > 1 else body[0]), "ts_in_future", "future reading")
    ev = {"meter_id": meter, "ts": _iso(ts, off), "type": draw(st.sampled_from(["power_fail", "power_restore"]))}
    return Input(EVENTS, meter.encode(), _j(ev), "ts_in_future", "future event")


@st.composite
def unknown_meter(draw, windows: list[tuple[int, int]]) -> Input:
    """Valid readings and events of meters that are not in the directory (unicode ids, any time that cannot be
    mistaken for the known meters' own period): held, given up or refused, never harmful."""
    meter = "zz-" + draw(UNICODE_ID)
    lo, hi = draw(st.sampled_from(windows))
    ts = draw(st.integers(lo, hi)) // 900 * 900
    key = draw(st.sampled_from([meter.encode("utf-8"), None]))
    if draw(st.booleans()):
        n = draw(st.integers(1, 4))
        body = [reading(meter, ts + 900 * i, v_avg=draw(st.floats(0, 1500)), kwh=draw(st.floats(0, 10)))
                for i in range(n)]
        return Input(READINGS, key, _j(body if n > 1 else body[0]), "any", "unknown meter's readings")
    ev = {"meter_id": meter, "ts": _iso(ts), "type": draw(st.sampled_from(["power_fail", "power_restore", "tamper"]))}
    return Input(EVENTS, key, _j(ev), "any", "unknown meter's event")


def inputs(meters: list[str], customers: list[dict], t0: int, now: int,
           windows: list[tuple[int, int]]) -> st.SearchStrategy[Input]:
    """Every kind above. ``t0``: a time inside the known meters' period (broken readings are dated there),
    ``now``: the wall clock, ``windows``: periods where unknown meters' readings may be dated."""
    keys = meters + [c["customer_id"] for c in customers]
    return st.one_of(
        broken_reading(meters, t0),
        shapeless(READINGS, keys), shapeless(EVENTS, keys), shapeless(CUSTOMERS, keys),
        broken_customer(customers),
        far_future(meters, now),
        unknown_meter(windows),
    )


def generate(strategy: st.SearchStrategy[Input], n: int, batch: int = 20, seed_: int = 20261203) -> list[Input]:
    """``n`` inputs drawn by hypothesis (``batch`` per example, a fixed seed: the same inputs every run)."""
    out: list[Input] = []

    @seed(seed_)
    @settings(max_examples=-(-n // batch), phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(strategy, min_size=batch, max_size=batch))
    def collect(xs):
        out.extend(xs)

    collect()
    return out[:n]
