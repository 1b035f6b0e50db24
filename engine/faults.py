"""Fault injection for the crash tests: ``M2V_FAULT=<point>:<n>`` SIGKILLs the engine the n-th time it passes a point.

The render's write points call :func:`point` (a string comparison when the
variable is unset), so the tests can kill the process exactly between two
writes — the instants a real crash is most likely to hurt — and check that
the next render resumes bit for bit.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("M2V_FAULT", "")
_WHERE, _, _N = _SPEC.partition(":")
_LEFT = {"n": int(_N) if _N.isdigit() else 1}


def hit(name: str) -> bool:
    """Count a pass of ``name``; True on the chosen pass (the caller may tear a record first, then :func:`kill`)."""
    if not _WHERE or name != _WHERE:
        return False
    _LEFT["n"] -= 1
    return _LEFT["n"] == 0


def kill() -> None:
    """Die now, as a power cut or the OOM killer would: no clean-up, no flush."""
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def point(name: str) -> None:
    """Die here if this is the chosen point and pass."""
    if hit(name):
        kill()
