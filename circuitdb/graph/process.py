"""Liveness of the server processes circuitdb starts (local Neo4j, embedded ArcadeDB)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) process; reaps it when it is our exited child."""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def runs(pid: int, marker: str) -> bool:
    """Guard against a recycled pid: the command line of ``pid`` mentions ``marker``.

    True where ``/proc`` does not tell (non-Linux); False when the process is gone.
    """
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.parent.joinpath("self").exists():
        return True
    try:
        return marker.encode() in cmdline.read_bytes()
    except OSError:
        return False
