"""Console sessions kept in the real PostgreSQL: a restart signs nobody out, and everything that ends a session
(sign-out, expiry, a changed user) still ends it after a restart."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from console import auth
from console.app import make_app
from console.model import ConsoleModel
from console.sessions import PostgresSessions
from history import schema as t
from tests.unit.test_console_app import OP_TOKEN, USERS, VIEW_SECRET, FakeOffsets, FakeProducer, settings

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def console(engine, users=USERS, **kw):
    """One console process's worth: its own Authenticator restored from the store."""
    store = PostgresSessions(engine)
    authenticator = auth.Authenticator(users, store=store, **kw)
    app = make_app(settings(), authenticator, model=ConsoleModel(), producer=FakeProducer(),
                   offsets=FakeOffsets(None))
    try:
        async with TestClient(TestServer(app)) as c:
            yield c, authenticator
    finally:
        store.flush()
        store.close()


async def sign_in(c, user, secret) -> tuple[str, str]:
    r = await c.post("/login", json={"user": user, "secret": secret})
    assert r.status == 200, await r.text()
    c.session.cookie_jar.clear()  # each sign-in as its own browser (signing in again ends the browser's session)
    return r.cookies[auth.SESSION_COOKIE].value, (await r.json())["csrf"]


async def me(c, cookie):
    r = await c.get("/api/me", headers={"Cookie": f"{auth.SESSION_COOKIE}={cookie}"})
    return r.status, (await r.json() if r.status == 200 else None)


def stored(engine) -> list[tuple[str, str]]:
    s = t.console_sessions
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(s.c.key, s.c.user_name)).all()]


def restarted_users(monkeypatch):
    """The same users list read by a new process (its own key for plain secrets)."""
    monkeypatch.setattr(auth, "_PROCESS_KEY", b"another process" * 2)
    vic = next(u for u in USERS if u.name == "vic")
    return auth.parse_users(f"ana:operator:{OP_TOKEN},vic:viewer:{vic.secret_hash}")


def test_a_session_survives_a_restart_and_its_sign_out_too(history_engine, monkeypatch):
    async def go():
        async with console(history_engine) as (c, _):
            vic, csrf = await sign_in(c, "vic", VIEW_SECRET)
            ana, _ = await sign_in(c, "ana", OP_TOKEN)
        rows = stored(history_engine)
        # only digests of the ids are stored, never a usable cookie
        assert sorted(u for _, u in rows) == ["ana", "vic"]
        assert {k for k, _ in rows} == {auth.session_key(vic), auth.session_key(ana)}
        assert not {vic, ana} & {k for k, _ in rows}

        users = restarted_users(monkeypatch)
        async with console(history_engine, users=users) as (c, a):  # the console restarted
            assert await me(c, vic) == (200, {"user": "vic", "role": "viewer", "csrf": csrf})
            # ana's secret is configured in plain: it is hashed anew at each start, so her session ended
            assert (await me(c, ana))[0] == 401
            assert a.sessions_of("vic") == 1 and a.sessions_of("ana") == 0
            r = await c.post("/logout", headers={"Cookie": f"{auth.SESSION_COOKIE}={vic}", auth.CSRF_HEADER: csrf})
            assert r.status == 200
            assert (await me(c, vic))[0] == 401
        assert stored(history_engine) == []

        async with console(history_engine, users=users) as (c, _):  # signed out stays signed out
            assert (await me(c, vic))[0] == 401

    asyncio.run(go())


def test_expired_and_changed_users_sessions_end_across_a_restart(history_engine):
    now = [1_000_000.0]
    clock = lambda: now[0]  # noqa: E731

    async def go():
        async with console(history_engine, clock=clock, idle_s=100, max_s=1000) as (c, _):
            old, _ = await sign_in(c, "vic", VIEW_SECRET)
            now[0] += 50
            fresh, _ = await sign_in(c, "vic", VIEW_SECRET)
        now[0] += 70  # old: 120 s idle (> 100); fresh: 70 s
        async with console(history_engine, clock=clock, idle_s=100, max_s=1000) as (c, a):
            assert (await me(c, old))[0] == 401
            assert (await me(c, fresh))[0] == 200
            for _ in range(12):  # a use well within the idle limit, written at most once a minute
                now[0] += 30
                assert (await me(c, fresh))[0] == 200
        assert [u for _, u in stored(history_engine)] == ["vic"]

        now[0] += 90  # within the idle limit only thanks to the uses written above
        async with console(history_engine, clock=clock, idle_s=100, max_s=1000) as (c, _):
            assert (await me(c, fresh))[0] == 200

        # vic's secret changed while the console was down: the stored session does not come back
        changed = auth.parse_users(f"vic:viewer:{auth.hash_secret('another-secret-123')}")
        async with console(history_engine, users=changed, clock=clock, idle_s=100, max_s=1000) as (c, _):
            assert (await me(c, fresh))[0] == 401
        assert stored(history_engine) == []

    asyncio.run(go())


def test_the_cap_per_user_counts_restored_sessions(history_engine):
    async def go():
        async with console(history_engine, max_sessions=2) as (c, _):
            first, _ = await sign_in(c, "vic", VIEW_SECRET)
            second, _ = await sign_in(c, "vic", VIEW_SECRET)
        async with console(history_engine, max_sessions=2) as (c, a):
            third, _ = await sign_in(c, "vic", VIEW_SECRET)
            assert a.sessions_of("vic") == 2
            assert [(await me(c, s))[0] for s in (first, second, third)] == [401, 200, 200]
        assert len(stored(history_engine)) == 2

    asyncio.run(go())
