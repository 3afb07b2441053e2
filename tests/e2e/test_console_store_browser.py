"""The live board's browser tests again, on a console that has the history store (and the projector running
beside the worker): customers, past alerts and the figures come from PostgreSQL, and the board still shows
every change without a reload (README "The operations console")."""

from __future__ import annotations

import pytest

from tests.e2e import test_console_browser as board
from tests.e2e.test_console_browser import *  # noqa: F401,F403 - the same tests, collected in this module

HISTORY_STORE = True  # read by the `stack` fixture (tests/e2e/conftest.py)
pytestmark = board.pytestmark + [pytest.mark.postgres]


def test_the_board_is_on_the_history_store(stack, sign_in):
    """What sets this module apart: the console found the store, so its figures are the database's."""
    figures = sign_in(board.VIEWER).request.get("/api/figures").json()
    assert "computed_at" in figures and figures["detection_s"]["n"] >= 2
