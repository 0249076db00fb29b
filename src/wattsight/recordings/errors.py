"""The recorder's errors: each carries the HTTP status the API answers with.

All derive from :class:`~wattsight.errors.QueryError`, so code that catches query errors
catches them too; the app answers ``exc.status`` (404, 409 or 422) with ``{"detail": ...}``.
"""

from __future__ import annotations

from ..consumers.api.catalog import UnknownName
from ..errors import QueryError


class NotFound(UnknownName):
    """A recording, step or job that does not exist (404)."""

    status = 404


class Conflict(QueryError):
    """A write that contradicts what is stored: a stopped recording, a step name taken (409)."""

    status = 409


class Invalid(QueryError):
    """A write whose times or fields cannot be right: a step before the start (422)."""

    status = 422
