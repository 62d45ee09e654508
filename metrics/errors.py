"""The bottom of the project's error family: input a user can get wrong.

Every package's error for bad input derives from :class:`InputError` (``metrics`` is the bottom
layer, so ``generation``, ``training`` and ``arena`` can all import it): a model folder or
weights file that cannot be used, an image set with nothing to score, a vote that a match
kind does not allow, a prompt or checkpoint that cannot be rendered, a training config that
does not validate, a simulation setting out of range. The message is one line that names the
input and what was expected, so the ``arena`` command line prints it as it is (exit 2) and the
JSON API answers it as ``400 {"error": message}``; each surface translates it once.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Input a user can get wrong; the message is one line naming the input and what was
    expected. A :class:`ValueError`, so callers that already catch that keep working."""
