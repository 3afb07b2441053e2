"""The directory stage: ``customers`` -> the customers table, and the directories re-keyed from it.

A customer record is re-published keyed by meter (``gridwatch.meter-directory`` -> the ``meters`` table, on
the partition of the meter's readings), by phone number (``gridwatch.phone-directory`` -> the ``phones``
table, on the partition of the sender's inbound SMS) and as membership of its feeder (``gridwatch.meter-status``),
so every later stage reads who is who from a table of its own partition.
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable

from detectors.pipeline import directory_entry
from gridwatch.contract import ContractError, decode_customer, decode_key
from streams.app import Context, _dumps, partition_for


def install(ctx: Context, meter_entry: Callable[[int, str, dict | None, object], Awaitable[None]]) -> None:
    """The ``customers``, ``phone-directory`` and ``meter-directory`` agents. ``meter_entry`` (the detect
    stage's) writes a meter's directory entry (``None``: gone) through the readings agent's view of the
    ``meters`` table and decides on what was held for the meter once it is in the directory."""
    app, n, stats = ctx.app, ctx.partitions, ctx.stats
    attempts, guard = ctx.attempts, ctx.guard
    customers_t, directory_t, phone_dir_t = ctx.topics.customers, ctx.topics.directory, ctx.topics.phone_dir
    status_t = ctx.topics.status
    customers_tb, phones_tb = ctx.tables.customers, ctx.tables.phones

    # -- customers and the meter directory --------------------------------------------------------
    @app.agent(customers_t, name="customers")
    async def on_customers(stream):
        async for event in attempts(stream, "customers"):
            msg = event.message
            async with guard(msg, "customers"):
                # an invalid record is dead-lettered here, before anything changes: the previous one stays
                cust = decode_customer(msg.key, msg.value)
                cid = decode_key(msg.key) or ""
                if not cid:
                    raise ContractError("customers: a record without a key (customer_id)")
                old = customers_tb.get(cid)
                # what changed is sent first, the table written last: a retry (streams/deadletters.py) or a
                # re-read after a crash sends the same upserts and tombstones again, which are idempotent
                if old and (cust is None or old["meter_id"] != cust["meter_id"]
                            or old["transformer_id"] != cust["transformer_id"]
                            or old["feeder_id"] != cust["feeder_id"]):
                    await status_t.send(key=old["feeder_id"].encode(), value=_dumps(
                        {"type": "member", "meter_id": old["meter_id"], "transformer_id": old["transformer_id"],
                         "removed": True}))
                    if cust is None or old["meter_id"] != cust["meter_id"]:
                        await directory_t.send(key=old["meter_id"].encode(), value=None)
                if old and (cust is None or old["phone"] != cust["phone"]):
                    await phone_dir_t.send(key=old["phone"].encode(), value=None)
                if cust is not None:
                    entry = directory_entry(cust)
                    # membership first, so the correlator knows the meter before any status of it; both sent
                    # at once (force) rather than at the next commit, so readings wait as little as possible
                    await status_t.send(key=cust["feeder_id"].encode(), value=_dumps(
                        {"type": "member", **entry, "partition": partition_for(cust["meter_id"], n)}), force=True)
                    await directory_t.send(key=cust["meter_id"].encode(), value=_dumps(entry), force=True)
                    if old is None or old["phone"] != cust["phone"]:
                        await phone_dir_t.send(key=cust["phone"].encode(), value=_dumps({"customer_id": cid}))
                if cust is None:
                    customers_tb.pop(cid, None)
                else:
                    customers_tb[cid] = cust
                stats["customers"] += 1

    @app.agent(phone_dir_t, name="phone-directory")
    async def on_phone_directory(stream):
        async for event in attempts(stream, "phone-directory"):
            msg = event.message
            async with guard(msg, "phone-directory"):
                phone = msg.key.decode("utf-8")
                if msg.value is None:
                    phones_tb.pop(phone, None)
                else:
                    phones_tb[phone] = json.loads(msg.value)

    @app.agent(directory_t, name="meter-directory")
    async def on_directory(stream):
        async for event in attempts(stream, "meter-directory"):
            msg = event.message
            async with guard(msg, "meter-directory"):
                meter_id = msg.key.decode("utf-8")
                entry = None if msg.value is None else json.loads(msg.value)
                await meter_entry(msg.partition, meter_id, entry, event)
