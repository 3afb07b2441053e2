"""The reports kept ready by the projector's refresher, and the console answering from them."""

from __future__ import annotations

import asyncio
import time

import pytest

from history import reliability, reports
from tests.history.test_console_history import client
from tests.history.test_reliability import outage, scenario
from tests.history.test_store import msgs, project
from tests.unit.test_console_app import VIEW

pytestmark = pytest.mark.postgres


def test_the_console_answers_from_the_kept_report_until_it_is_refreshed(history_engine):
    project(history_engine, scenario())
    took = reports.refresh(history_engine, 2026)
    assert set(took) == {"reliability", "customers"}
    # a new outage after the refresh: the kept report does not show it yet, a fresh one does
    project(history_engine, msgs("alerts", [outage("A9", "2026-03-01T00:00:00Z", "2026-03-01T01:00:00Z",
                                                   ["C11"])], start=50))

    async def go():
        async with client(history_engine) as c:
            async def get(**params):
                r = await c.get("/api/history/reliability", params={"year": "2026", **params}, headers=VIEW)
                assert r.status == 200, await r.text()
                return await r.json()
            kept, fresh = await get(), await get(fresh="1")
            assert kept["system"]["ytd"]["saidi"] == 46 and "computed_at" in kept
            assert fresh["system"]["ytd"]["saidi"] == pytest.approx(46 + 60 / 15)
            # one feeder's view of the whole report is what the report of that feeder alone says
            f2, f2_fresh = await get(feeder="F2"), await get(feeder="F2", fresh="1")
            with history_engine.connect() as conn:
                direct = reliability.report(conn, year=2026, feeder="F2")
            assert f2["system"] == kept["feeders"]["F2"] and f2["feeders"] == {"F2": kept["feeders"]["F2"]}
            assert f2_fresh["system"]["ytd"] == direct["system"]["ytd"] == fresh["feeders"]["F2"]["ytd"]
            assert [r["feeder_id"] for r in f2["ranking"]] == ["F2"]
            r = await c.get("/api/history/customers", params={"year": "2026"}, headers=VIEW)
            assert "computed_at" in await r.json()
    asyncio.run(go())


def refresh_once(refresher: reports.Refresher) -> None:
    """Start the refresher, tell it something changed, and stop it once it has refreshed (60 s at most)."""
    refresher.start()
    try:
        refresher.changed()
        deadline = time.monotonic() + 60
        while refresher.refreshes == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        refresher.stop()


def test_the_refresher_keeps_every_year_with_data_after_a_change(history_engine):
    project(history_engine, scenario())
    refresh_once(reports.Refresher(history_engine, interval_s=0.1))
    with history_engine.connect() as conn:
        kept = reports.cached(conn, "reliability", 2026)
    assert kept is not None and kept["system"]["ytd"]["customer_minutes_interrupted"] == 690


def test_each_feeders_slice_is_kept_in_its_own_row_with_the_report(history_engine):
    from sqlalchemy import select

    from history import schema as t

    project(history_engine, scenario())
    reports.refresh(history_engine, 2026)
    with history_engine.connect() as conn:
        rows = dict(conn.execute(select(t.report_slices.c.scope, t.report_slices.c.body)
                                 .where(t.report_slices.c.name == "reliability",
                                        t.report_slices.c.year == 2026)).all())
        whole = reports.cached(conn, "reliability", 2026)
        f2 = reports.cached(conn, "reliability", 2026, "F2")
        unknown = reports.cached(conn, "reliability", 2026, "F9")
        assert reports.cached(conn, "reliability", 2025, "F2") is None
    assert sorted(rows) == sorted(whole["feeders"]) == ["F1", "F2"]
    assert rows["F2"]["system"] == whole["feeders"]["F2"] and f2["feeders"] == {"F2": whole["feeders"]["F2"]}
    assert f2["computed_at"] == whole["computed_at"] and f2["feeder"] == "F2"
    assert unknown["system"] == {} and unknown["feeders"] == {}
    # a refresh replaces the slices with the report's (a feeder gone from it leaves no stale row)
    with history_engine.begin() as conn:
        conn.execute(t.report_slices.insert().values(name="reliability", year=2026, scope="F7", body={}))
    reports.refresh(history_engine, 2026, names=("reliability",))
    with history_engine.connect() as conn:
        assert sorted(conn.execute(select(t.report_slices.c.scope)).scalars()) == ["F1", "F2"]
