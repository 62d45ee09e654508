"""The one error type the generation package raises for input a user can get wrong."""

from __future__ import annotations

from metrics.errors import InputError

__all__ = ["GenerationError"]


class GenerationError(InputError):
    """A checkpoint, config folder, prompt, prompt set or setting that cannot be used.

    The message is one line that names the input and what was expected, so the CLI can print
    it as it is and the API answer it with a 400 (:mod:`metrics.errors`).
    """
