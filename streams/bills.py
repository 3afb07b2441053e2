"""The bill stage: ``gridwatch.daily-usage`` (per customer, from the detect stage) -> the daily-usage
detectors (bill_spike) -> alerts. Model fits run in a process pool, so the event loop never waits on one.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from detectors.pipeline import CustomerStage
from gridwatch.contract import ContractError
from streams import alerts
from streams.app import Context


def install(ctx: Context) -> None:
    """The ``bills`` agent, and its process pool (started at the first fit, shut down with the app)."""
    app, s, stats = ctx.app, ctx.settings, ctx.stats
    attempts, guard = ctx.attempts, ctx.guard
    publish_alerts = partial(alerts.publish_alerts, ctx)
    daily_t = ctx.topics.daily
    customers_tb, bills_tb = ctx.tables.customers, ctx.tables.bills
    customer_stage = CustomerStage(ctx.detectors)
    pool_box: list = []

    def fit_pool():
        if not pool_box:
            # spawn, not fork: the worker has threads (Kafka, RocksDB) a forked child must not inherit
            pool_box.append(ProcessPoolExecutor(max_workers=max(1, s.fit_processes),
                                                mp_context=multiprocessing.get_context("spawn")))
        return pool_box[0]

    @app.agent(daily_t, name="bills")
    async def on_days(stream):
        loop = asyncio.get_running_loop()
        async for event in attempts(stream, "bills"):
            msg = event.message
            async with guard(msg, "bills"):
                cid = msg.key.decode("utf-8")
                body = json.loads(msg.value)
                cust = customers_tb.get(cid)
                if cust is None:
                    raise ContractError(f"daily usage of customer {cid!r}, who is not in the customers table")
                states, records, requests = customer_stage.process(bills_tb.get(cid), body["days"], cust)
                for name, payload in requests:
                    started = time.monotonic()
                    result = await loop.run_in_executor(fit_pool(), customer_stage.fit_function(name), payload)
                    stats["fits"] += 1
                    stats["fit_ms"] += int((time.monotonic() - started) * 1000)
                    states, recs = customer_stage.apply(states, name, result, cust)
                    records += recs
                await publish_alerts(records)  # (before the state: a retry re-sends the same findings)
                bills_tb[cid] = states


    @app.on_before_shutdown.connect
    async def close_pool(app, **kwargs):
        if pool_box:
            pool_box[0].shutdown(wait=False, cancel_futures=True)
