"""The console's JSON error, shared by its handlers (console/app.py, console/history_api.py)."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as JSON ``{"error": message}`` with ``status`` (and ``headers``)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers
