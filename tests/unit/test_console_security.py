"""The console against guessing, session hoarding, open redirects, streams outliving their session and
hostile bodies."""

from __future__ import annotations

import asyncio
import base64

import pytest

from console import auth
from console.app import CONSOLE, _safe_next
from tests.unit.test_console_app import OP, OP_TOKEN, USERS, VIEW, VIEW_SECRET, arun, console


def basic(name: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


# ------------------------------------------------------------------------------------------- hashing

def test_secrets_are_stored_as_salted_argon2id_hashes():
    one, two = auth.hash_secret("same secret"), auth.hash_secret("same secret")
    assert one.startswith("$argon2id$") and one != two  # salted: the same secret hashes differently
    (user,) = auth.parse_users("a:viewer:plain-secret-1")
    assert user.secret_hash.startswith("$argon2id$") and "plain-secret-1" not in user.secret_hash
    assert user.matches("plain-secret-1") and not user.matches("plain-secret-2") and not user.matches("")
    with pytest.raises(auth.UsersError, match="no longer accepted"):
        auth.parse_users("a:viewer:sha256:" + "ab" * 32)


def test_hash_secret_command_prints_a_hash_the_console_accepts(monkeypatch, capsys):
    import io

    from console.app import run

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-word\n"))
    assert run(type("A", (), {"hash_secret": True})()) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("$argon2id$") and "s3cret-word" not in printed
    assert auth.parse_users(f"z:operator:{printed}")[0].matches("s3cret-word")


# --------------------------------------------------------------------------------------- throttling

def test_failed_sign_ins_are_throttled_per_user_with_retry_after_and_back_off():
    async def go():
        async with console() as c:
            statuses = []
            for _ in range(8):
                r = await c.post("/login", json={"user": "ana", "secret": "guess"})
                statuses.append((r.status, r.headers.get("Retry-After")))
            # the right secret is refused too while throttled, and not checked
            right = await c.post("/login", json={"user": "ana", "secret": OP_TOKEN})
            form = await c.post("/login", data={"user": "ana", "secret": OP_TOKEN})
            return statuses, (right.status, right.headers.get("Retry-After")), (form.status, await form.text())

    statuses, right, form = arun(go())
    assert [s for s, _ in statuses[:5]] == [401] * 5
    assert all(s == 429 and int(after) >= 1 for s, after in statuses[5:])
    assert right[0] == 429 and int(right[1]) >= 1
    assert form[0] == 429 and "Too many failed sign-ins" in form[1]


def test_the_throttle_backs_off_exponentially_and_forgets():
    now = [0.0]
    t = auth.Throttle(free=3, base_s=1, max_s=60, window_s=600, clock=lambda: now[0])
    for _ in range(3):
        assert t.wait("k") == 0
        t.failed("k")
    waits = []
    for _ in range(8):
        waits.append(t.wait("k"))
        now[0] += waits[-1]
        t.failed("k")
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    now[0] += 601 + 60
    assert t.wait("k") == 0 and len(t) == 0
    t.failed("k")
    t.succeeded("k")
    assert len(t) == 0
    small = auth.Throttle(max_keys=2, clock=lambda: now[0])
    for k in "abc":
        small.failed(k)
    assert len(small) == 2


def test_failures_are_counted_per_address_across_user_names_and_schemes():
    async def go():
        async with console() as c:
            for n in range(3):
                await c.post("/login", json={"user": f"nobody{n}", "secret": "x"})
            await c.get("/api/me", headers={"Authorization": "Bearer guessed-token"})
            await c.get("/api/me", headers=basic("vic", "wrong"))
            r = await c.get("/api/me", headers={"Authorization": "Bearer another-guess"})
            ok_via_known_token = await c.get("/api/me", headers=OP)  # verified before the address was throttled?
            return r.status, r.headers.get("Retry-After"), ok_via_known_token.status

    status, after, known = arun(go())
    assert status == 429 and int(after) >= 1
    assert known == 429  # never verified from here before: the address waits, whoever it claims to be


def test_a_token_that_verified_before_is_not_slowed_by_the_throttle_or_the_hash():
    async def go():
        async with console() as c:
            assert (await c.get("/api/me", headers=OP)).status == 200
            for _ in range(6):
                await c.get("/api/me", headers={"Authorization": "Bearer guessed"})
            return [(await c.get("/api/me", headers=OP)).status for _ in range(20)]

    # the address is throttled, but a token that verified before is recognised without a new check
    assert arun(go()) == [200] * 20


# ---------------------------------------------------------------------------------------- sessions

def test_sessions_per_user_are_capped_the_oldest_ending_first():
    async def go():
        async with console() as c:
            a = c.server.app[CONSOLE].auth
            cookies = []
            for _ in range(auth.MAX_SESSIONS_PER_USER + 15):
                c.session.cookie_jar.clear()
                r = await c.post("/login", json={"user": "vic", "secret": VIEW_SECRET})
                assert r.status == 200
                cookies.append(r.cookies[auth.SESSION_COOKIE].value)
            first, last = cookies[0], cookies[-1]
            c.session.cookie_jar.clear()
            old = await c.get("/api/me", cookies={auth.SESSION_COOKIE: first})
            new = await c.get("/api/me", cookies={auth.SESSION_COOKIE: last})
            return a.sessions_of("vic"), old.status, new.status

    count, old, new = arun(go())
    assert count == auth.MAX_SESSIONS_PER_USER and (old, new) == (401, 200)


def test_sessions_expire_idle_and_in_all():
    now = [0.0]
    a = auth.Authenticator(USERS, clock=lambda: now[0], idle_s=10, max_s=25)
    s = a.open_session(USERS[0])
    now[0] = 9
    assert a.session(s.id) is s
    now[0] = 18
    assert a.session(s.id) is s
    now[0] = 26  # used 8 s ago, but older than max_s
    assert a.session(s.id) is None
    s2 = a.open_session(USERS[0])
    now[0] += 11
    assert a.session(s2.id) is None


# ------------------------------------------------------------------------------------------- next

@pytest.mark.parametrize("evil", ["/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "//evil.example",
                                  "/\\evil.example", "/\\/evil.example", "https://evil.example/", "javascript:alert(1)",
                                  "evil.example", "/ /evil.example", "/\x00/evil", "/\x7f/evil", "/a\\..\\..\\//evil",
                                  "\t//evil.example", "", None, ["/alerts"], "/\u0085/evil"])
def test_next_is_only_a_path_on_this_console(evil):
    assert _safe_next(evil) == "/"


@pytest.mark.parametrize("good", ["/", "/alerts/A1", "/alerts/A1?tab=evidence#x", "/alerts/%2F%2Fevil"])
def test_next_keeps_same_origin_paths(good):
    assert _safe_next(good) == good


def test_the_sign_in_redirect_never_leaves_the_console():
    async def go():
        async with console() as c:
            out = []
            for nxt in ("/\t/evil.example", "/\\evil.example", "//evil.example", "/alerts/A1"):
                c.session.cookie_jar.clear()
                r = await c.post("/login", data={"user": "ana", "secret": OP_TOKEN, "next": nxt},
                                 allow_redirects=False)
                out.append(r.headers["Location"])
            return out

    assert arun(go()) == ["/", "/", "/", "/alerts/A1"]


# ----------------------------------------------------------------------------------- live streams

async def _open_stream(c, **kw):
    r = await c.get("/api/events", **kw)
    assert r.status == 200
    assert (await asyncio.wait_for(r.content.readline(), 2)).startswith(b"retry:")
    return r


async def _ended(r, within: float = 3.0) -> bool:
    """The stream is closed by the server within ``within`` seconds (heartbeats may come before)."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        line = await asyncio.wait_for(r.content.readline(), within)
        if line == b"":
            return True
    return False


def test_sign_out_closes_the_sessions_live_event_stream():
    async def go():
        async with console() as c:
            login = await c.post("/login", json={"user": "vic", "secret": VIEW_SECRET})
            csrf = (await login.json())["csrf"]
            stream = await _open_stream(c)
            other = await _open_stream(c, headers=VIEW)  # the same user over Basic: not this session
            assert (await c.post("/logout", headers={"X-CSRF-Token": csrf})).status == 200
            ended = await _ended(stream)
            line = await asyncio.wait_for(other.content.readline(), 2)
            return ended, line

    ended, line = arun(go())
    assert ended and line == b": connected\n"


def test_an_expired_session_ends_its_stream():
    async def go():
        async with console() as c:
            await c.post("/login", json={"user": "vic", "secret": VIEW_SECRET})
            stream = await _open_stream(c)
            a = c.server.app[CONSOLE].auth
            (session,) = [s for s in a._sessions.values()]
            session.created -= auth.SESSION_MAX_S + 1  # as if a day had passed
            return await _ended(stream)  # within a heartbeat (0.2 s here)

    assert arun(go())


def test_re_reading_an_unchanged_list_keeps_everyone_signed_in():
    users = auth.parse_users(f"ana:operator:{OP_TOKEN},vic:viewer:{VIEW_SECRET}")
    a = auth.Authenticator(users)
    s = a.open_session(users[1])
    a.set_users(auth.parse_users(f"ana:operator:{OP_TOKEN},vic:viewer:{VIEW_SECRET}"))  # new salts, same users
    assert a.session(s.id) is s
    a.set_users(auth.parse_users(f"ana:operator:{OP_TOKEN},vic:operator:{VIEW_SECRET}"))  # a new role
    assert a.session(s.id) is None
    s = a.open_session(a.users[1])
    a.set_users(auth.parse_users(f"ana:operator:{OP_TOKEN},vic:operator:a-new-secret-1"))  # a new secret
    assert a.session(s.id) is None


def test_removing_a_user_ends_their_sessions_and_streams():
    async def go():
        async with console() as c:
            await c.post("/login", json={"user": "vic", "secret": VIEW_SECRET})
            by_cookie = await _open_stream(c)
            c.session.cookie_jar.clear()
            by_basic = await _open_stream(c, headers=VIEW)
            by_bearer = await _open_stream(c, headers=OP)
            a = c.server.app[CONSOLE].auth
            a.set_users([u for u in a.users if u.name != "vic"])
            ended = [await _ended(by_cookie), await _ended(by_basic)]
            still = await asyncio.wait_for(by_bearer.content.readline(), 2)
            return ended, still, (await c.get("/api/me", headers=VIEW)).status

    ended, still, me = arun(go())
    assert ended == [True, True] and still == b": connected\n" and me == 401


# ------------------------------------------------------------------------------------ hostile bodies

@pytest.mark.parametrize("body, ctype", [
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    (b'{"user": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json"),
    (b'{"user": "\xff\xfe", "secret": "x"}', "application/json"),
    (b'{"user": "ana"}', "application/json; charset=no-such-charset"),
    (b"user=\xff\xfe&secret=x", "application/x-www-form-urlencoded"),
    (b"--b\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\n\xff\r\n", "multipart/form-data; boundary=b"),
    (b'{"user": ["ana"], "secret": {"x": 1}, "next": 5}', "application/json"),
])
def test_hostile_bodies_to_login_are_4xx_never_500(body, ctype):
    async def go():
        async with console() as c:
            r = await c.post("/login", data=body, headers={"Content-Type": ctype})
            acted = await c.post("/api/alerts/A1/acknowledge", data=body, headers={**OP, "Content-Type": ctype})
            return r.status, await r.text(), acted.status

    status, text, acted = arun(go())
    assert 400 <= status < 500 and "Traceback" not in text
    assert 400 <= acted < 500
