"""Sends are spaced to the sender's rate (a fake clock: no timing in the test)."""

from __future__ import annotations

import asyncio

import pytest

from notifiers.pacing import Pacer


class FakeTime:
    def __init__(self):
        self.now, self.slept = 100.0, []

    def clock(self):
        return self.now

    async def sleep(self, s):
        self.slept.append(round(s, 6))
        self.now += s


def test_a_burst_is_spread_one_gap_apart():
    t = FakeTime()
    pacer = Pacer(2.0, clock=t.clock, sleep=t.sleep)

    async def burst():
        for _ in range(4):
            await pacer.wait()

    asyncio.run(burst())
    assert t.slept == [0.5, 0.5, 0.5]  # the first goes at once, the others 0.5 s apart


def test_no_wait_after_a_pause_longer_than_the_gap():
    t = FakeTime()
    pacer = Pacer(1.0, clock=t.clock, sleep=t.sleep)
    asyncio.run(pacer.wait())
    t.now += 5
    asyncio.run(pacer.wait())
    assert t.slept == []


def test_rate_must_be_positive():
    with pytest.raises(ValueError):
        Pacer(0)
