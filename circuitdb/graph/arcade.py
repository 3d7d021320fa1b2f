"""The embedded default backend: an ArcadeDB server in a child process, reused across commands.

:func:`ensure_server` is what :func:`circuitdb.graph.backend.open_backend` calls
when no Neo4j URI is configured. It reads ``DIR/server.json``; if the server it
names is alive (pid running, recognisably ours, Bolt port accepting) it is
reused, otherwise a new child (:mod:`circuitdb.graph.arcade_server`) is
started and awaited. A file lock makes two commands starting at once share one
server. Data persists in ``DIR/server/databases`` between runs.

When it stops: on :func:`stop_server` (``circuitdb db down --embedded``), or by
itself after ``idle_s`` seconds (default 1800, ``CIRCUITDB_EMBEDDED_IDLE_S``)
with no client connected; ``idle_s=0`` keeps it up until stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from circuitdb.errors import BackendUnavailable
from circuitdb.graph.process import pid_alive, runs
from circuitdb.graph.arcade_server import (
    CREDENTIALS_FILE,
    LAST_USED_FILE,
    LOG_FILE,
    MODULE,
    ROOT_DIR,
    STATE_FILE,
    write_json_atomic,
)

LOCK_FILE = ".lock"
ROOT_USER = "root"


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded ArcadeDB server, as recorded in its state file."""

    data_dir: Path
    pid: int
    host: str
    bolt_port: int
    http_port: int
    database: str
    user: str
    password: str = field(repr=False)
    version: str = "unknown"
    started_at: float = 0.0
    idle_timeout_s: float = 0.0

    @property
    def uri(self) -> str:
        """The Bolt URI the driver connects to."""
        return f"bolt://{self.host}:{self.bolt_port}"


def credentials(data_dir: Path, *, create: bool = True) -> tuple[str, str]:
    """The root user and password of this data dir, created (mode 0600) on first use."""
    path = Path(data_dir) / CREDENTIALS_FILE
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        # ArcadeDB takes the root password only when it creates its users file; a new password
        # needs a new users file (the databases are untouched).
        with contextlib.suppress(FileNotFoundError):
            (Path(data_dir) / ROOT_DIR / "config" / "server-users.jsonl").unlink()
        write_json_atomic(path, {"user": ROOT_USER, "password": secrets.token_urlsafe(24)}, mode=0o600)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["user"]), str(data["password"])
    except (OSError, ValueError, KeyError) as exc:
        raise BackendUnavailable(
            f"cannot read embedded credentials {path} ({type(exc).__name__}); delete the file to start the "
            "embedded graph afresh"
        ) from None


def touch(data_dir: Path) -> None:
    """Mark the embedded server as used now (feeds its idle timeout)."""
    with contextlib.suppress(OSError):
        (Path(data_dir) / LAST_USED_FILE).touch()


def _pid_alive(pid: int) -> bool:
    """Our embedded server runs as ``pid`` (alive, and not a recycled pid)."""
    return pid_alive(pid) and runs(pid, MODULE)


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_state(data_dir: Path) -> EmbeddedServer | None:
    """The server recorded in ``DIR/server.json``, or ``None`` (no file, unreadable, or not running)."""
    data_dir = Path(data_dir)
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
        if (data_dir / CREDENTIALS_FILE).exists():
            user, password = credentials(data_dir, create=False)
        else:  # lost: the server runs with a password nobody knows (ensure_server replaces it)
            user, password = ROOT_USER, ""
        state = EmbeddedServer(
            data_dir=data_dir,
            pid=int(raw["pid"]),
            host=str(raw["host"]),
            bolt_port=int(raw["bolt_port"]),
            http_port=int(raw["http_port"]),
            database=str(raw["database"]),
            user=user,
            password=password,
            version=str(raw.get("version", "unknown")),
            started_at=float(raw.get("started_at", 0.0)),
            idle_timeout_s=float(raw.get("idle_timeout_s", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(state.pid) or not _port_open(state.host, state.bolt_port):
        return None
    return state


server_status = read_state


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_server(
    data_dir: Path, *, heap: str = "1g", idle_s: float = 1800.0, timeout_s: float = 120.0, poll_s: float = 5.0
) -> EmbeddedServer:
    """Reuse the embedded server of ``data_dir`` or start one, and return it once it accepts Bolt.

    Parameters
    ----------
    data_dir
        Data directory (created if missing).
    heap
        Java heap of a newly started server.
    idle_s
        Idle timeout of a newly started server in seconds (0 = never).
    timeout_s
        How long to wait for a new server to come up.
    poll_s
        How often a new server checks whether it is idle.

    Returns
    -------
    EmbeddedServer

    Raises
    ------
    BackendUnavailable
        If the server cannot be started (the message quotes its log).
    """
    data_dir = Path(data_dir).expanduser().resolve()
    with _locked(data_dir):
        if not (data_dir / CREDENTIALS_FILE).exists():
            _stop_orphan(data_dir)  # a server still running with credentials nobody knows any more
        state = read_state(data_dir)
        if state is None:
            state = _start(data_dir, heap=heap, idle_s=idle_s, timeout_s=timeout_s, poll_s=poll_s)
    touch(data_dir)
    return state


def _stop_orphan(data_dir: Path) -> None:
    try:
        pid = int(json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if _pid_alive(pid):
        _terminate(pid, timeout_s=30.0)


def _start(data_dir: Path, *, heap: str, idle_s: float, timeout_s: float, poll_s: float) -> EmbeddedServer:
    credentials(data_dir)
    with contextlib.suppress(FileNotFoundError):
        (data_dir / STATE_FILE).unlink()  # stale: its server is gone
    log_path = data_dir / LOG_FILE
    argv = [
        sys.executable, "-m", MODULE, "--data", str(data_dir), "--heap", heap, "--idle-timeout", str(idle_s),
        "--poll", str(poll_s),
    ]
    # posix_spawn, not subprocess.Popen: the server outlives this process by design, and a Popen
    # object would complain when collected while its child still runs. setsid: ^C in the
    # terminal of the command that started it does not stop it.
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        try:
            pid = os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions, setsid=True)
        except NotImplementedError:  # no POSIX_SPAWN_SETSID on this platform
            pid = _popen_detached(argv, log_path)
    except OSError as exc:
        raise BackendUnavailable(f"cannot start the embedded graph server: {exc}; check that {data_dir} is writable") from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        exited = False
        with contextlib.suppress(ChildProcessError):
            exited = os.waitpid(pid, os.WNOHANG)[0] == pid
        if exited:
            raise BackendUnavailable(
                f"the embedded graph server exited during startup ({_log_hint(log_path)}); see {log_path}"
            )
        state = read_state(data_dir)
        if state is not None and state.pid == pid:
            return state
        time.sleep(0.2)
    _terminate(pid, timeout_s=10.0)
    raise BackendUnavailable(
        f"the embedded graph server did not come up within {timeout_s:.0f}s; see {log_path}, or use a Neo4j server via --neo4j-uri"
    )


#: Popen handles of servers started by the fallback path, kept so they are never collected while running.
_DETACHED: list[subprocess.Popen] = []


def _popen_detached(argv: list[str], log_path: Path) -> int:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _DETACHED.append(proc)
    return proc.pid


def _log_hint(log_path: Path) -> str:
    try:
        lines = [ln.strip() for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "failed" in line.lower() or "exception" in line.lower() or "error" in line.lower():
            return line[:200]
    return lines[-1][:200] if lines else "empty log"


def _terminate(pid: int, *, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)


def stop_server(data_dir: Path, *, timeout_s: float = 30.0) -> EmbeddedServer | None:
    """Stop the embedded server of ``data_dir`` (SIGTERM, then SIGKILL after ``timeout_s``).

    Returns
    -------
    EmbeddedServer or None
        The server that was stopped, or ``None`` if none was running.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    with _locked(data_dir):
        state = read_state(data_dir)
        if state is None:
            return None
        _terminate(state.pid, timeout_s=timeout_s)
        with contextlib.suppress(FileNotFoundError):
            (data_dir / STATE_FILE).unlink()
    return state
