"""The wire contract: JSON Schema files in ``gridwatch/schemas`` plus the checks a schema cannot say.

Everything that enters the pipeline passes through one ``decode_*`` function here. They either return
normalised values or raise :class:`ContractError` with a message that names the field, which the worker
puts on the dead-letter topic with the original text.

Time inside the pipeline is an ``int`` of UTC epoch seconds ("event time"); it is formatted back to RFC 3339
with ``Z`` on the way out.

What cannot be true is refused, and every refusal carries a short ``code`` for the dead letter:

- ``not_json``: not UTF-8, not JSON, nested deeper than the parser goes, an integer of thousands of digits,
  a lone UTF-16 surrogate (``"\\ud800"``, not encodable as UTF-8);
- ``not_finite``: ``NaN``, ``Infinity``, ``-Infinity`` or a number beyond a double (``1e400``), anywhere in
  the value; :func:`dumps` refuses them on the way out too;
- ``invalid``: the topic's JSON Schema (types, required fields, ranges: voltages 0 - 1,500 V, energy at most
  the 10 MW of :data:`MAX_KW` over the interval, nominal voltage 100 - 690 V, an E.164 phone) and the checks a
  schema cannot say (an IANA time zone, ``v_min`` <= ``v_max``, a real calendar date);
- ``key_mismatch``: the message key is not the record's id;
- ``ts_out_of_range``: a timestamp before :data:`EARLIEST_TS` (2000-01-01), which no smart meter sent.

Timestamps ahead of the wall clock or of the rest of their partition (``ts_in_future``) and readings of
meters that are not in the directory (``unknown_meter``) are judged by the worker, which knows both.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

import fastjsonschema
import msgspec

__all__ = [
    "ContractError", "Reading", "MeterEvent", "SCHEMA_NAMES", "EARLIEST_TS", "MAX_KW",
    "schema", "validator", "parse_ts", "format_ts", "loads", "dumps", "finite",
    "decode_readings", "decode_event", "decode_customer", "decode_key", "check",
]

SCHEMA_NAMES = ("meter.readings", "meter.events", "customers", "alerts", "notifications", "feedback",
                "gridwatch.dlq")


#: no reading or event is dated before this (epoch s of 2000-01-01T00:00:00Z)
EARLIEST_TS = 946684800
#: the largest power a meter's reading may imply (kWh over the interval): 10 MW, beyond any LV / MV customer
MAX_KW = 10_000.0


class ContractError(ValueError):
    """An input that breaks the wire contract; the message says where and why, ``code`` is a short code
    for the dead letter (see the module docstring)."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.code = code


@cache
def schema(name: str) -> dict:
    """The JSON Schema of a topic's message value, as published in ``gridwatch/schemas``."""
    text = resources.files("gridwatch.schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def validator(name: str):
    if name == "reading":
        return fastjsonschema.compile(schema("meter.readings")["definitions"]["reading"])
    return fastjsonschema.compile(schema(name))


def check(name: str, value: Any) -> Any:
    """Validate ``value`` against the topic's schema; returns it with schema defaults filled in."""
    if name == "meter.readings":
        # Validated item by item, so the error names the item and field rather than "oneOf failed".
        if isinstance(value, list):
            if not value:
                raise ContractError("meter.readings: an empty array")
            return [check_item(f"meter.readings[{i}]", v) for i, v in enumerate(value)]
        return check_item("meter.readings", value)
    try:
        return validator(name)(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise ContractError(f"{name}: {exc.message}") from None
    except RecursionError:
        raise ContractError(f"{name}: nested too deeply", "not_json") from None


def check_item(where: str, value: Any) -> Any:
    try:
        return validator("reading")(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise ContractError(f"{where}: {exc.message}") from None
    except RecursionError:
        raise ContractError(f"{where}: nested too deeply", "not_json") from None


def parse_ts(text: str) -> int:
    """RFC 3339 with an offset -> UTC epoch seconds. A timestamp without an offset, or before
    :data:`EARLIEST_TS`, is refused."""
    try:
        dt = datetime.fromisoformat(text)
        epoch = dt.timestamp()
    except (TypeError, ValueError, OverflowError):
        raise ContractError(f"not an RFC 3339 timestamp: {text!r}") from None
    if dt.tzinfo is None:
        raise ContractError(f"timestamp without a UTC offset: {text!r}")
    if epoch < EARLIEST_TS:
        raise ContractError(f"timestamp {text!r} is before 2000-01-01", "ts_out_of_range")
    return int(epoch)


def format_ts(epoch: float | int | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Reading:
    """One interval of one meter. ``ts`` is the END of the interval, in epoch seconds."""
    meter_id: str
    ts: int
    interval_s: int = 900
    kwh: float | None = None
    v_avg: float | None = None
    v_min: float | None = None
    v_max: float | None = None
    quality: str = "actual"


@dataclass(frozen=True, slots=True)
class MeterEvent:
    meter_id: str
    ts: int
    type: str


def _no_constant(name: str) -> Any:
    raise ContractError(f"{name} is not a number the contract allows (no NaN or Infinity)", "not_finite")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ContractError(f"number {text[:40]}{'...' if len(text) > 40 else ''} is beyond a double",
                            "not_finite")
    return x


_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(payload: bytes | str | None) -> Any:
    """JSON text (UTF-8) -> value, refusing what JSON's own grammar does not allow (NaN, Infinity) and
    numbers or strings Python would accept but cannot pass on (an overflowing float, a lone surrogate)."""
    if payload is None:
        raise ContractError("empty message value", "not_json")
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = payload.decode("utf-8")  # the contract says UTF-8; json would guess UTF-16/32 too
        except UnicodeDecodeError:
            raise ContractError("message value is not UTF-8", "not_json") from None
    try:
        value = json.loads(payload, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ContractError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "not_json") from None
    except RecursionError:
        raise ContractError("not JSON we accept: nested too deeply", "not_json") from None
    except ContractError:
        raise
    except ValueError as exc:  # an integer literal of thousands of digits
        raise ContractError(f"not JSON we accept: {exc}", "not_json") from None
    if "\\u" in payload and _SURROGATE.search(payload):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ContractError("a string holds a lone UTF-16 surrogate (not encodable as UTF-8)",
                                "not_json") from None
    return value


_loads = loads


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``: for records written before the contract
    refused them, so that what we serve is still valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """A record we publish or serve: compact UTF-8 JSON; a NaN or Infinity in it is a bug and raises
    ``ValueError`` rather than going out as invalid JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_key(key: bytes | str | None) -> str | None:
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            raise ContractError("message key is not UTF-8", "not_json") from None
    return key


_key = decode_key


def decode_readings(key: bytes | str | None, payload: bytes | str | None) -> list[Reading]:
    """One ``meter.readings`` message (one reading or an array of one meter's readings) -> readings.

    The whole message is refused when any item is invalid, so a dead letter always holds a complete,
    replayable message.

    Two paths, one verdict: :func:`_fast_items` (msgspec decodes and checks a message of known fields in one
    pass, ~5x faster) takes what it can prove valid against the schema; anything else — an error, an unknown
    field, an escape that may be a lone surrogate — goes the way every other topic goes (``loads``, then the
    JSON Schema), which says what is wrong. The checks beyond the schema are the same code for both.
    """
    fast = _fast_items(payload)
    if fast is not None:
        value, items = fast
    else:
        value = check("meter.readings", _loads(payload))
        items = [_item(v) for v in value] if isinstance(value, list) else [_item(value)]
    key_s = _key(key)
    out = []
    array = isinstance(value, list)
    for i, item in enumerate(items):
        where = f"[{i}] " if array else ""
        if key_s is not None and item.meter_id != key_s:
            raise ContractError(f"{where}meter_id {item.meter_id!r} does not match the message key {key_s!r}",
                                "key_mismatch")
        ts = _TS_SEEN.get(item.ts)
        if ts is None:
            try:
                ts = parse_ts(item.ts)
            except ContractError as exc:
                raise ContractError(f"{where}ts: {exc}", exc.code) from None
            if len(_TS_SEEN) >= 4096:
                _TS_SEEN.clear()
            _TS_SEEN[item.ts] = ts
        interval, kwh, v_min, v_max = item.interval_s, item.kwh, item.v_min, item.v_max
        if kwh is not None and kwh > MAX_KW * interval / 3600:
            raise ContractError(f"{where}kwh: {kwh} kWh in {interval} s is {kwh * 3600 / interval:.0f} kW, "
                                f"more than any meter's {MAX_KW:.0f} kW")
        if v_min is not None and v_max is not None and v_min > v_max:
            raise ContractError(f"{where}v_min {v_min} is above v_max {v_max}")
        out.append(Reading(item.meter_id, ts, interval, kwh, item.v_avg, v_min, v_max, item.quality))
    return out


#: timestamp text -> epoch s: the meters of a utility read at the same quarter hours, so few distinct texts
_TS_SEEN: dict[str, int] = {}


def _schema_meta(prop: str, **extra: Any) -> msgspec.Meta:
    """The bounds of one reading field, read from the schema itself (so the two paths cannot drift)."""
    p = schema("meter.readings")["definitions"]["reading"]["properties"][prop]
    names = {"minimum": "ge", "maximum": "le", "minLength": "min_length", "maxLength": "max_length",
             "pattern": "pattern"}
    return msgspec.Meta(**{names[k]: v for k, v in p.items() if k in names}, **extra)


def _number(prop: str):
    meta = _schema_meta(prop)
    return Annotated[int, meta] | Annotated[float, meta] | None   # an int stays an int, as json.loads has it


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    """One reading as the schema allows it (``additionalProperties`` aside: an unknown field takes the slow
    path, which checks its value for NaN and the like)."""
    meter_id: Annotated[str, _schema_meta("meter_id")]
    ts: Annotated[str, _schema_meta("ts")]
    interval_s: Annotated[int, _schema_meta("interval_s")] = 900
    kwh: _number("kwh") = None                              # type: ignore[valid-type]
    v_avg: _number("v_avg") = None                          # type: ignore[valid-type]
    v_min: _number("v_min") = None                          # type: ignore[valid-type]
    v_max: _number("v_max") = None                          # type: ignore[valid-type]
    quality: Literal["actual", "estimated"] = "actual"


def _item(v: dict) -> _Item:
    return _Item(v["meter_id"], v["ts"], v.get("interval_s", 900), v.get("kwh"), v.get("v_avg"), v.get("v_min"),
                 v.get("v_max"), v.get("quality", "actual"))


_FAST = msgspec.json.Decoder(list[_Item] | _Item)


def _fast_items(payload: bytes | str | None) -> tuple[Any, list[_Item]] | None:
    """(the decoded value, its items) when msgspec proves the message valid; None: take the slow path."""
    if payload is None or (b"\\u" if isinstance(payload, (bytes, bytearray)) else "\\u") in payload:
        return None
    try:
        value = _FAST.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if isinstance(value, list):
        return (value, value) if value else None
    return value, [value]


def _meter_ts(item: dict, key_s: str | None, where: str) -> int:
    """A reading's or an event's time, once its meter_id is the message key's (``where``: its place in an
    array, for the message)."""
    if key_s is not None and item["meter_id"] != key_s:
        raise ContractError(f"{where}meter_id {item['meter_id']!r} does not match the message key {key_s!r}",
                            "key_mismatch")
    try:
        return parse_ts(item["ts"])
    except ContractError as exc:
        raise ContractError(f"{where}ts: {exc}", exc.code) from None


def decode_event(key: bytes | str | None, payload: bytes | str | None) -> MeterEvent:
    value = check("meter.events", _loads(payload))
    ts = _meter_ts(value, _key(key), "")
    return MeterEvent(meter_id=value["meter_id"], ts=ts, type=value["type"])


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def decode_customer(key: bytes | str | None, payload: bytes | str | None) -> dict | None:
    """A ``customers`` record with defaults filled in, or ``None`` for a tombstone (delete)."""
    if payload is None:
        return None
    value = check("customers", _loads(payload))
    key_s = _key(key)
    if key_s is not None and value["customer_id"] != key_s:
        raise ContractError(f"customer_id {value['customer_id']!r} does not match the message key {key_s!r}",
                            "key_mismatch")
    if value["timezone"] not in _zones():
        raise ContractError(f"customers: timezone {value['timezone'][:64]!r} is not an IANA time zone")
    prefs = value.setdefault("preferences", {})
    prefs.setdefault("quiet_hours", ["22:00", "08:00"])
    prefs.setdefault("bill_alert_pct", 30)
    return value
