"""What a test does when something it needs is not on this machine."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason`` (a broker, PostgreSQL, Chromium, Prism, the shared data folder ... is missing), except
    under ``CI=true``: ``.ci/run`` provides every one of them, so there a skip would quietly turn a broken check
    green, and the test fails with the reason instead."""
    __tracebackhide__ = True  # the skip is reported at the test's line that called this, not here
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
