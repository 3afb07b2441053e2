"""Sending paced to the sender's rate.

A long code takes about one SMS segment per second, a short code or a Messaging Service with several
senders more; sending faster only gets messages queued at the provider (and, past ``ValidityPeriod``,
dropped) or refused with 429. :class:`Pacer` spaces sends at least ``1 / per_second`` apart.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

__all__ = ["Pacer"]


class Pacer:
    """``await pacer.wait()`` before each send. The clock and sleep are injectable for tests."""

    def __init__(self, per_second: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        if per_second <= 0:
            raise ValueError("per_second must be > 0")
        self.gap = 1.0 / per_second
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")

    async def wait(self) -> None:
        now = self._clock()
        if self._next > now:
            await self._sleep(self._next - now)
            now = self._next
        self._next = now + self.gap
