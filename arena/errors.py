"""The service's errors a user can cause: the CLI prints them on one line, the API answers
them with a 4xx.

:class:`UserError` derives from :class:`metrics.errors.InputError`, the bottom of the error
family that the lower packages' errors (``GenerationError``, ``ConfigError``,
``CCIPModelError``, ``ClipModelError``, ``InvalidVote``, ...) derive from too. Each surface
translates the whole family once: the CLI in :mod:`arena.cli.common` (``error: <message>``,
exit 2), the JSON API in :mod:`arena.web.http` (``status_code``, else 400, as
``{"error": message}``), the worker in :mod:`arena.jobs.worker` (the job fails at once).
"""

from __future__ import annotations

from metrics.errors import InputError

__all__ = [
    "Conflict",
    "Forbidden",
    "Gone",
    "ImageError",
    "InputError",
    "NotFound",
    "RateLimited",
    "StaleRatings",
    "Unavailable",
    "UserError",
    "one_line",
    "status_code",
]


class UserError(InputError):
    """A mistake in the user's input; the message names the input and what was expected."""

    status_code: int = 400


class NotFound(UserError):
    """A named thing (config, checkpoint, match token) does not exist."""

    status_code = 404


class Conflict(UserError):
    """The request contradicts stored state (already voted, duplicate name)."""

    status_code = 409


class Forbidden(UserError):
    """The caller may not do this (wrong voter, missing admin token)."""

    status_code = 403


class Gone(UserError):
    """The thing existed but is no longer usable (expired match)."""

    status_code = 410


class RateLimited(UserError):
    """Too many requests from one voter."""

    status_code = 429


class Unavailable(UserError):
    """The service cannot do this until an operator acts (e.g. ratings to recompute)."""

    status_code = 503


class ImageError(UserError):
    """Image bytes that cannot go into the pool (not a PNG, broken, truncated, too large)."""


class StaleRatings(UserError):
    """Stored snapshots were computed with other rating parameters than those in force."""


def one_line(message: object) -> str:
    """An error's message as one line: its whitespace (newlines included) folded to spaces."""
    return " ".join(str(message).split())


def status_code(exc: InputError) -> int:
    """The HTTP status of an input error: a service error's own, else 400 (bad input)."""
    return getattr(exc, "status_code", 400)
