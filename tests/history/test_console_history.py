"""The console's history paths on the real PostgreSQL: filters, search, pagination, reports, CSV, errors."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console.app import make_app
from console.history_api import HISTORY
from console.model import ConsoleModel
from tests.history.test_reliability import scenario
from tests.history.test_store import alert, msgs, project
from tests.unit.test_console_app import OP, USERS, VIEW, FakeOffsets, FakeProducer, settings

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def client(engine, **kw):
    app = make_app(settings(**kw), USERS, model=ConsoleModel(), producer=FakeProducer(), offsets=FakeOffsets(None))
    if engine is not None:
        app[HISTORY].engine = engine
    async with TestClient(TestServer(app)) as c:
        yield c


def test_alerts_by_period_feeder_transformer_kind_status_search_and_pages(history_engine):
    extra = [alert(f"undervoltage:meter:M{i:03d}:2026-03-{1 + i % 28:02d}T00:00:00Z", kind="undervoltage",
                   customers=("C01",), started_at=f"2026-03-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                   scope={"level": "meter", "id": f"M{i:03d}"}, evidence={}) for i in range(25)]
    project(history_engine, scenario() + msgs("alerts", extra, start=100))

    async def go():
        async with client(history_engine) as c:
            async def get(path, **params):
                r = await c.get(path, params=params, headers=VIEW)
                assert r.status == 200, await r.text()
                return await r.json()

            everything = await get("/api/history/alerts", limit="1000")
            assert len(everything["items"]) == 9 + 25 and everything["next_cursor"] is None
            starts = [a["started_at"] for a in everything["items"]]
            assert starts == sorted(starts, reverse=True)
            # pages of 10 walk the same rows in the same order, none twice
            seen, cursor = [], None
            while True:
                page = await get("/api/history/alerts", limit="10", **({"cursor": cursor} if cursor else {}))
                seen += [a["alert_id"] for a in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert seen == [a["alert_id"] for a in everything["items"]]
            feb = await get("/api/history/alerts", **{"from": "2026-02-01", "to": "2026-03-01", "kind": "outage"})
            assert {a["alert_id"] for a in feb["items"]} == {"A4", "A5", "A6", "A7", "A8"}
            f2 = await get("/api/history/alerts", feeder="F2")
            assert {a["alert_id"] for a in f2["items"]} == {"A2"}  # taken from its customers' directory entries
            t1 = await get("/api/history/alerts", transformer="T1", status="open", kind="outage")
            assert {a["alert_id"] for a in t1["items"]} == {"A8"}
            found = await get("/api/history/alerts", q="m007")
            assert [a["alert_id"] for a in found["items"]] == ["undervoltage:meter:M007:2026-03-08T00:00:00Z"]
            one = await get("/api/history/alerts/A1")
            assert one["customers_ever_affected"] == ["C01", "C02", "C03", "C04"]
            assert (await c.get("/api/history/alerts/nope", headers=VIEW)).status == 404

            rel = await get("/api/history/reliability", year="2026")
            assert rel["system"]["ytd"]["saidi"] == 46 and [r["feeder_id"] for r in rel["ranking"]] == ["F1", "F2"]
            r = await c.get("/api/history/reliability", params={"year": "2026", "format": "csv"}, headers=VIEW)
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(await r.text())))
            assert {(x["scope"], x["period"]) for x in rows} >= {("system", "ytd"), ("F1", "2026-01"), ("F2", "ytd")}
            assert next(x for x in rows if (x["scope"], x["period"]) == ("system", "2026-01"))["saifi"] == "0.6"
            r = await c.get("/api/history/alerts", params={"format": "csv", "kind": "outage"}, headers=OP)
            assert len(list(csv.DictReader(io.StringIO(await r.text())))) == 7
            cust = await get("/api/history/customers", year="2026")
            assert set(cust) >= {"first_message", "told_before_report", "delivery", "replies", "satisfaction",
                                 "opt_out"}
            for bad in ({"from": "yesterday"}, {"limit": "0"}, {"cursor": "xyz"}, {"format": "xml"}):
                r = await c.get("/api/history/alerts", params=bad, headers=VIEW)
                assert r.status == 400 and "error" in await r.json(), bad
            assert (await c.get("/api/history/customers", params={"format": "csv"}, headers=VIEW)).status == 400
            assert (await c.get("/api/history/alerts")).status == 401
    asyncio.run(go())


def test_without_a_store_the_history_answers_503_and_the_board_still_works(tmp_path):
    async def go():
        async with client(None, run_dir=tmp_path, database_url=None) as c:
            r = await c.get("/api/history/alerts", headers=VIEW)
            assert r.status == 503 and "gridwatch db start" in (await r.json())["error"]
            assert (await c.get("/api/alerts", headers=VIEW)).status == 200
    asyncio.run(go())
