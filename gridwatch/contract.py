"""The wire contract: JSON Schema files in ``gridwatch/schemas`` plus the checks a schema cannot say.

Everything that enters the pipeline passes through one ``decode_*`` function here. They either return
normalised values or raise :class:`ContractError` with a message that names the field, which the worker
puts on the dead-letter topic with the original text.

Time inside the pipeline is an ``int`` of UTC epoch seconds ("event time"); it is formatted back to RFC 3339
with ``Z`` on the way out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

__all__ = [
    "ContractError", "Reading", "MeterEvent", "SCHEMA_NAMES",
    "schema", "validator", "parse_ts", "format_ts",
    "decode_readings", "decode_event", "decode_customer", "check",
]

SCHEMA_NAMES = ("meter.readings", "meter.events", "customers", "alerts", "notifications", "feedback",
                "gridwatch.dlq")


class ContractError(ValueError):
    """An input that breaks the wire contract; the message says where and why."""


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


def check_item(where: str, value: Any) -> Any:
    try:
        return validator("reading")(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise ContractError(f"{where}: {exc.message}") from None


def parse_ts(text: str) -> int:
    """RFC 3339 with an offset -> UTC epoch seconds. A timestamp without an offset is refused."""
    try:
        dt = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ContractError(f"not an RFC 3339 timestamp: {text!r}") from None
    if dt.tzinfo is None:
        raise ContractError(f"timestamp without a UTC offset: {text!r}")
    return int(dt.timestamp())


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


def _loads(payload: bytes | str | None) -> Any:
    if payload is None:
        raise ContractError("empty message value")
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = payload.decode("utf-8")  # the contract says UTF-8; json would guess UTF-16/32 too
        except UnicodeDecodeError:
            raise ContractError("message value is not UTF-8") from None
    try:
        return json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ContractError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _key(key: bytes | str | None) -> str | None:
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            raise ContractError("message key is not UTF-8") from None
    return key


def decode_readings(key: bytes | str | None, payload: bytes | str | None) -> list[Reading]:
    """One ``meter.readings`` message (one reading or an array of one meter's readings) -> readings.

    The whole message is refused when any item is invalid, so a dead letter always holds a complete,
    replayable message.
    """
    value = check("meter.readings", _loads(payload))
    items = value if isinstance(value, list) else [value]
    key_s = _key(key)
    out = []
    for i, item in enumerate(items):
        where = f"[{i}] " if isinstance(value, list) else ""
        if key_s is not None and item["meter_id"] != key_s:
            raise ContractError(f"{where}meter_id {item['meter_id']!r} does not match the message key {key_s!r}")
        try:
            ts = parse_ts(item["ts"])
        except ContractError as exc:
            raise ContractError(f"{where}ts: {exc}") from None
        out.append(Reading(
            meter_id=item["meter_id"], ts=ts, interval_s=item.get("interval_s", 900),
            kwh=item.get("kwh"), v_avg=item.get("v_avg"), v_min=item.get("v_min"), v_max=item.get("v_max"),
            quality=item.get("quality", "actual"),
        ))
    return out


def decode_event(key: bytes | str | None, payload: bytes | str | None) -> MeterEvent:
    value = check("meter.events", _loads(payload))
    key_s = _key(key)
    if key_s is not None and value["meter_id"] != key_s:
        raise ContractError(f"meter_id {value['meter_id']!r} does not match the message key {key_s!r}")
    return MeterEvent(meter_id=value["meter_id"], ts=parse_ts(value["ts"]), type=value["type"])


def decode_customer(key: bytes | str | None, payload: bytes | str | None) -> dict | None:
    """A ``customers`` record with defaults filled in, or ``None`` for a tombstone (delete)."""
    if payload is None:
        return None
    value = check("customers", _loads(payload))
    key_s = _key(key)
    if key_s is not None and value["customer_id"] != key_s:
        raise ContractError(f"customer_id {value['customer_id']!r} does not match the message key {key_s!r}")
    prefs = value.setdefault("preferences", {})
    prefs.setdefault("quiet_hours", ["22:00", "08:00"])
    prefs.setdefault("bill_alert_pct", 30)
    return value
