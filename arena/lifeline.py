"""Helper processes end with the process that started them, even when it is killed.

The server starts helper processes (the leaderboard worker, the Bradley-Terry refit pool).
A clean stop ends them through ``atexit`` and the pools' own shutdown; a SIGKILL of the
server runs none of that, and they would live on, reparented to PID 1. So each helper calls
:func:`exit_with_parent` when it starts: a daemon thread checks every ``POLL_SECONDS`` that
its parent is still running, and ends the helper once it is not. (Linux's
``PR_SET_PDEATHSIG`` is not used: it fires when the parent *thread* that created the child
ends, and pools create their processes from whichever thread submits work.)
"""

from __future__ import annotations

import os
import threading

__all__ = ["POLL_SECONDS", "exit_with_parent"]

POLL_SECONDS = 1.0


def _parent_gone(parent: int) -> bool:
    """The parent has ended: this process was handed to another (a reaper), or the parent
    is a zombie nobody has waited for yet (then ``getppid`` still names it)."""
    if os.getppid() != parent:
        return True
    try:
        with open(f"/proc/{parent}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):  # no /proc (not Linux): getppid alone decides
        return False


def _watch(parent: int) -> None:
    while not threading.Event().wait(POLL_SECONDS):
        if _parent_gone(parent):
            os._exit(0)  # nothing to finish: whoever wanted the results is gone


def exit_with_parent(parent: int) -> None:
    """Make this process end within ``POLL_SECONDS`` of the end of ``parent``, the process id
    of the process that started it (passed in: by the time a helper starts, its parent may
    already be gone and ``getppid`` name a reaper). Call it first thing in a helper."""
    if _parent_gone(parent):
        os._exit(0)
    threading.Thread(target=_watch, args=(parent,), name="exit-with-parent", daemon=True).start()
