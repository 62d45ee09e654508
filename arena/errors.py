"""Errors a user can cause: the CLI prints them on one line, the API answers them with a 4xx."""

from __future__ import annotations


class UserError(Exception):
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
