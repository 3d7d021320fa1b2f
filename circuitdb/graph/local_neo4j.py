"""A real Neo4j on this machine without Docker: the Maven-built launcher in ``docker/``.

``docker/pom.xml`` fetches Neo4j 5.26 LTS community from Maven Central and builds a
small Java launcher (``docker/launcher/...CircuitdbNeo4j.java``) that runs an
embedded DBMS with the Bolt connector on a loopback port. This module

- finds ``java`` (JDK 17 or newer) and ``mvn``;
- builds the launcher once into a user cache directory (jars stay in ``~/.m2``
  and the cache, so a second start needs no network);
- starts it as a detached child process, records a state file in a run
  directory and waits, with a bounded timeout, for its ready line;
- reports its status and stops it (SIGTERM, wait, then SIGKILL).

One local server per run directory. Directories (all overridable by env):

================  =====================================================  =============================
what              default                                                env override
================  =====================================================  =============================
build cache       ``$XDG_CACHE_HOME/circuitdb`` (``~/.cache/circuitdb``)  ``CIRCUITDB_CACHE_DIR``
run dir (state)   ``$XDG_STATE_HOME/circuitdb/local-neo4j``               ``CIRCUITDB_NEO4J_RUN_DIR``
data (DBMS home)  ``$XDG_DATA_HOME/circuitdb/neo4j``                      ``--data`` / ``CIRCUITDB_NEO4J_DATA``
================  =====================================================  =============================

Library code raises :mod:`circuitdb.errors` exceptions and reports progress
through an optional callback; it never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from circuitdb.errors import BackendUnavailable, InputError
from circuitdb.graph.process import pid_alive, runs

#: Neo4j version the Maven project pins (keep in step with docker/pom.xml).
NEO4J_VERSION = "5.26.30"
#: Port tried first when the caller names none (the usual Bolt port).
DEFAULT_PORT = 7687
LOOPBACK = "127.0.0.1"
READY_MARK = "CIRCUITDB_NEO4J_READY"
FAILED_MARK = "CIRCUITDB_NEO4J_FAILED"
LAUNCHER_JAR = "circuitdb-neo4j-launcher.jar"
MIN_PASSWORD_LENGTH = 8  # Neo4j 5's default dbms.security.auth_minimum_password_length
DEFAULT_JAVA_OPTS = "-Xms256m -Xmx1g"
#: Neo4j's page cache (store files cached off-heap; allocated as it fills). The launcher's own default
#: (128m) is smaller than the store of a 1M-relationship graph (~430 MB), which then pages on every query.
DEFAULT_PAGECACHE = "512m"
_PAGECACHE_RE = re.compile(r"^[1-9][0-9]*[kmgKMG]?$")

Callback = Callable[[str], None]


@dataclass(frozen=True)
class Toolchain:
    """The ``java`` and ``mvn`` executables used to build and run the launcher."""

    java: Path
    java_version: int
    mvn: Path | None


@dataclass(frozen=True)
class LocalNeo4jState:
    """What ``state.json`` in the run directory records about a started server."""

    pid: int
    port: int
    data_dir: str
    auth: bool
    uri: str
    log: str
    version: str = NEO4J_VERSION
    started_at: str = ""
    ready: bool = False

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LocalNeo4jState:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})  # type: ignore[arg-type]


@dataclass(frozen=True)
class LocalNeo4jStatus:
    """The answer of :func:`status`: is a local server running, and how is it set up."""

    running: bool
    run_dir: str
    uri: str | None = None
    port: int | None = None
    data_dir: str | None = None
    auth: bool | None = None
    pid: int | None = None
    version: str | None = None
    log: str | None = None
    reachable: bool | None = None
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- directories


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    return Path(value) if value else Path.home() / fallback


def cache_dir() -> Path:
    """User cache root for circuitdb (``CIRCUITDB_CACHE_DIR`` or ``$XDG_CACHE_HOME/circuitdb``)."""
    override = os.environ.get("CIRCUITDB_CACHE_DIR", "")
    return Path(override) if override else _xdg("XDG_CACHE_HOME", ".cache") / "circuitdb"


def run_dir() -> Path:
    """Where the state file and log of the local server live."""
    override = os.environ.get("CIRCUITDB_NEO4J_RUN_DIR", "")
    if override:
        return Path(override)
    return _xdg("XDG_STATE_HOME", ".local/state") / "circuitdb" / "local-neo4j"


def default_data_dir() -> Path:
    """Default DBMS home of the local server (``CIRCUITDB_NEO4J_DATA`` or the user data dir)."""
    override = os.environ.get("CIRCUITDB_NEO4J_DATA", "")
    if override:
        return Path(override)
    return _xdg("XDG_DATA_HOME", ".local/share") / "circuitdb" / "neo4j"


# --------------------------------------------------------------------------- toolchain


_JAVA_VERSION_RE = re.compile(r'version "(\d+)(?:\.(\d+))?')


def _java_major(java: Path) -> int:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable(f"cannot run {java} -version ({exc}); install JDK 17 (apt-get install openjdk-17-jdk-headless)") from exc
    match = _JAVA_VERSION_RE.search(out.stderr + out.stdout)
    if not match:
        raise BackendUnavailable(f"cannot tell the Java version of {java}; install JDK 17 (apt-get install openjdk-17-jdk-headless)")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_toolchain(*, need_mvn: bool = True) -> Toolchain:
    """Locate ``java`` (``$JAVA_HOME/bin/java`` first, then ``PATH``) and ``mvn``.

    Raises
    ------
    BackendUnavailable
        When Java 17+ or (with ``need_mvn``) Maven is missing; the message says how to install them.
    """
    hint = "install them (Debian: apt-get install openjdk-17-jdk-headless maven) or run Neo4j with Docker (docker/compose.yml)"
    java: Path | None = None
    java_home = os.environ.get("JAVA_HOME", "")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        java = Path(java_home) / "bin" / "java"
    elif shutil.which("java"):
        java = Path(shutil.which("java"))  # type: ignore[arg-type]
    if java is None:
        raise BackendUnavailable(f"no java found for the local Neo4j (needs JDK 17+ and Maven); {hint}")
    major = _java_major(java)
    if major < 17:
        raise BackendUnavailable(f"{java} is Java {major}, the local Neo4j needs Java 17+; {hint}")
    mvn_path = shutil.which("mvn")
    if need_mvn and not mvn_path:
        raise BackendUnavailable(f"no mvn found to build the local Neo4j launcher; {hint}")
    return Toolchain(java=java, java_version=major, mvn=Path(mvn_path) if mvn_path else None)


# --------------------------------------------------------------------------- build


def _project_files() -> list[tuple[str, bytes]]:
    """The Maven project shipped as package data ``circuitdb.docker``: (relative path, bytes)."""
    root = resources.files("circuitdb.docker")
    files: list[tuple[str, bytes]] = [("pom.xml", root.joinpath("pom.xml").read_bytes())]

    def walk(node, rel: str) -> None:  # type: ignore[no-untyped-def]
        for child in node.iterdir():
            child_rel = f"{rel}/{child.name}"
            if child.is_dir():
                walk(child, child_rel)
            elif child.name.endswith(".java"):
                files.append((child_rel, child.read_bytes()))

    walk(root.joinpath("launcher"), "launcher")
    if len(files) < 2:
        raise BackendUnavailable("the circuitdb.docker package data lacks the launcher sources; reinstall circuitdb")
    return sorted(files)


def launcher_dir() -> Path:
    """Cache directory of the built launcher for this Neo4j version and these sources."""
    digest = hashlib.sha256()
    for rel, data in _project_files():
        digest.update(rel.encode() + b"\0" + data + b"\0")
    return cache_dir() / f"neo4j-{NEO4J_VERSION}-{digest.hexdigest()[:12]}"


def is_built(directory: Path | None = None) -> bool:
    """Whether the launcher jar and its ``lib/`` are in the cache."""
    directory = directory or launcher_dir()
    return (directory / LAUNCHER_JAR).is_file() and (directory / ".complete").is_file()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_launcher(*, toolchain: Toolchain | None = None, on_event: Callback | None = None,
                   timeout_s: float = 1500.0) -> Path:
    """Build the launcher with Maven into the cache once; return its directory.

    A cached build is reused without running Maven (so no network). Maven keeps
    the Neo4j jars in ``~/.m2``; the runnable layout (launcher jar + ``lib/``) is
    copied into :func:`launcher_dir`. Concurrent callers wait on a file lock.
    """
    target = launcher_dir()
    if is_built(target):
        return target
    with _file_lock(cache_dir() / ".neo4j-build.lock"):
        if is_built(target):
            return target
        toolchain = toolchain or find_toolchain(need_mvn=True)
        if on_event:
            on_event(f"building the local Neo4j {NEO4J_VERSION} launcher with Maven (first run; "
                     "downloads about 130 MB of jars from Maven Central)")
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir()))
        try:
            for rel, data in _project_files():
                dest = work / "src" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            log_path = cache_dir() / f"neo4j-{NEO4J_VERSION}-build.log"
            with open(log_path, "wb") as log:
                try:
                    proc = subprocess.run(
                        [str(toolchain.mvn), "-B", "-q", "package"],
                        cwd=work / "src", stdout=log, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, timeout=timeout_s,
                        env={**os.environ, "JAVA_HOME": str(toolchain.java.resolve().parent.parent)},
                    )
                except subprocess.TimeoutExpired as exc:
                    raise BackendUnavailable(
                        f"building the local Neo4j launcher took over {timeout_s:.0f} s; see {log_path} and retry") from exc
            built = work / "src" / "target"
            if proc.returncode != 0 or not (built / LAUNCHER_JAR).is_file():
                raise BackendUnavailable(
                    f"building the local Neo4j launcher failed (mvn exit {proc.returncode}); "
                    f"see {log_path} (Maven Central must be reachable on the first build)")
            staged = work / "out"
            staged.mkdir()
            shutil.copy2(built / LAUNCHER_JAR, staged / LAUNCHER_JAR)
            shutil.copytree(built / "lib", staged / "lib")
            (staged / ".complete").write_text(NEO4J_VERSION + "\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staged, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune_old_builds(keep=target)
    return target


def _prune_old_builds(keep: Path) -> None:
    """Drop launcher builds of other sources/versions (each holds ~120 MB of jars).

    A server still running from one keeps its open jars (Linux frees them at exit).
    """
    for old in cache_dir().glob("neo4j-*"):
        if old.is_dir() and old != keep and (old / LAUNCHER_JAR).exists():
            shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- processes and ports


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``host:port`` can be bound now (nobody listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: ignore TIME_WAIT leftovers (as Neo4j's own bind does); a listener still fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS says is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_taken_error(port: int) -> InputError:
    return InputError(f"port {port} on {LOOPBACK} is already taken; choose another with --port N, "
                      "or omit --port to pick a free one")


def _reachable(port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _is_launcher(pid: int) -> bool:
    """Guard against a recycled pid: the process must be our launcher (where /proc tells)."""
    return runs(pid, LAUNCHER_JAR)


def _read_state(directory: Path) -> LocalNeo4jState | None:
    path = directory / "state.json"
    try:
        return LocalNeo4jState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None


def _write_state(directory: Path, state: LocalNeo4jState) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".state.json.{os.getpid()}"
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, directory / "state.json")


def _clear_state(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (directory / "state.json").unlink()


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _marker_line(path: Path) -> str | None:
    try:
        with open(path, errors="replace") as handle:
            for line in handle:
                if line.startswith((READY_MARK, FAILED_MARK)):
                    return line.strip()
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- public API


def status(directory: Path | None = None) -> LocalNeo4jStatus:
    """Report the local server recorded in the run directory (stale state files are cleared)."""
    directory = directory or run_dir()
    state = _read_state(directory)
    if state is None:
        return LocalNeo4jStatus(running=False, run_dir=str(directory))
    if not pid_alive(state.pid) or not _is_launcher(state.pid):
        _clear_state(directory)
        return LocalNeo4jStatus(running=False, run_dir=str(directory),
                                note=f"last server (pid {state.pid}) is gone; cleared its state")
    return LocalNeo4jStatus(
        running=True, run_dir=str(directory), uri=state.uri, port=state.port, data_dir=state.data_dir,
        auth=state.auth, pid=state.pid, version=state.version, log=state.log,
        reachable=_reachable(state.port), note="" if state.ready else "starting",
    )


def start(*, port: int | None = None, data_dir: Path | None = None, auth: bool = False,
          password: str | None = None, timeout_s: float = 300.0, directory: Path | None = None,
          java_opts: str | None = None, pagecache: str | None = None,
          on_event: Callback | None = None) -> LocalNeo4jState:
    """Build (once) and start the local Neo4j; return its state once Bolt is ready.

    Parameters
    ----------
    port
        Loopback port for Bolt. ``None``: 7687 when free, else a free port (reported
        through ``on_event``). A taken port raises :class:`InputError`.
    data_dir
        DBMS home (databases, transaction logs, logs). Default :func:`default_data_dir`.
    auth
        Turn authentication on; ``password`` (or env ``NEO4J_PASSWORD``) becomes user
        ``neo4j``'s password.
    timeout_s
        How long to wait for the ready line before killing the process.
    directory
        Run directory (state file, log). Default :func:`run_dir`.
    java_opts
        JVM options (default env ``CIRCUITDB_NEO4J_JAVA_OPTS`` or ``-Xms256m -Xmx1g``).
    pagecache
        Neo4j page cache size such as ``512m`` or ``2g`` (default env ``CIRCUITDB_NEO4J_PAGECACHE``
        or ``512m``).
    on_event
        Called with one-line progress messages.

    Returns
    -------
    LocalNeo4jState
        pid, port, URI, data directory, auth flag, log path.

    Raises
    ------
    InputError
        Port taken, already running with other settings, missing/short password, bad data dir.
    BackendUnavailable
        No Java/Maven, build failed, or the server did not come up in time.
    """
    directory = directory or run_dir()
    data = (data_dir or default_data_dir()).expanduser().resolve()
    if data.exists() and not data.is_dir():
        raise InputError(f"--data {data} is a file, not a directory; pass a directory for the Neo4j data")
    if auth:
        password = password if password is not None else os.environ.get("NEO4J_PASSWORD", "")
        if not password:
            raise InputError("--auth needs a password in NEO4J_PASSWORD; export NEO4J_PASSWORD=... (8+ characters)")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InputError(f"NEO4J_PASSWORD is shorter than {MIN_PASSWORD_LENGTH} characters, "
                             "which Neo4j refuses; export a longer one")

    pagecache = pagecache if pagecache is not None else os.environ.get("CIRCUITDB_NEO4J_PAGECACHE", DEFAULT_PAGECACHE)
    if not _PAGECACHE_RE.match(pagecache.strip()):
        raise InputError(f"page cache size {pagecache!r} is not a size; pass e.g. --pagecache 512m or 2g")
    current = status(directory)
    if current.running:
        same = (current.data_dir == str(data) and current.auth == auth
                and (port is None or port == current.port))
        if same and current.note != "starting":
            state = _read_state(directory)
            if state is not None:
                if on_event:
                    on_event(f"local Neo4j is already running at {state.uri} (pid {state.pid})")
                return state
        raise InputError(f"a local Neo4j is already running at {current.uri} (pid {current.pid}, data "
                         f"{current.data_dir}); stop it with 'circuitdb db down' first")

    auto_port = port is None
    if port is not None:
        if not 1 <= port <= 65535:
            raise InputError(f"--port {port} is out of range; use 1-65535")
        if not port_is_free(port):
            raise port_taken_error(port)
    elif port_is_free(DEFAULT_PORT):
        port = DEFAULT_PORT
    else:
        port = free_port()
        if on_event:
            on_event(f"port {DEFAULT_PORT} is taken; using free port {port} instead")

    toolchain = find_toolchain(need_mvn=False)
    if not is_built():
        toolchain = find_toolchain(need_mvn=True)
    home = build_launcher(toolchain=toolchain, on_event=on_event)

    directory.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    opts = (java_opts if java_opts is not None
            else os.environ.get("CIRCUITDB_NEO4J_JAVA_OPTS", DEFAULT_JAVA_OPTS)).split()
    launch = _Launch(java=toolchain.java, java_opts=opts, jar=home / LAUNCHER_JAR, data=data, auth=auth,
                     password=password or "", directory=directory, timeout_s=timeout_s,
                     pagecache=pagecache.strip().lower())
    for attempt in range(3):
        try:
            return _spawn_and_wait(launch, port, on_event)
        except _PortRace:
            if not auto_port or attempt == 2:
                raise port_taken_error(port) from None
            taken, port = port, free_port()
            if on_event:
                on_event(f"port {taken} was taken meanwhile; using free port {port} instead")
    raise AssertionError("unreachable")  # pragma: no cover


class _PortRace(Exception):
    """The launcher could not bind its port (someone took it after our check)."""


@dataclass(frozen=True)
class _Launch:
    java: Path
    java_opts: list[str]
    jar: Path
    data: Path
    auth: bool
    password: str
    directory: Path
    timeout_s: float
    pagecache: str = DEFAULT_PAGECACHE


def _spawn_and_wait(launch: _Launch, port: int, on_event: Callback | None) -> LocalNeo4jState:
    """Start the launcher detached, record its state, and wait for its ready line."""
    directory = launch.directory
    log_path = directory / "neo4j.log"
    cmd = [str(launch.java), *launch.java_opts, "-jar", str(launch.jar),
           "--port", str(port), "--data", str(launch.data), "--pagecache", launch.pagecache]
    env = {k: v for k, v in os.environ.items() if k != "NEO4J_PASSWORD"}
    if launch.auth:
        cmd.append("--auth")
        env["NEO4J_PASSWORD"] = launch.password
    if on_event:
        on_event(f"starting local Neo4j {NEO4J_VERSION} on {LOOPBACK}:{port} (data {launch.data})")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=str(directory), start_new_session=True, close_fds=True)
    state = LocalNeo4jState(pid=proc.pid, port=port, data_dir=str(launch.data), auth=launch.auth,
                            uri=f"bolt://{LOOPBACK}:{port}", log=str(log_path),
                            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _write_state(directory, state)

    deadline = time.monotonic() + launch.timeout_s
    while True:
        line = _marker_line(log_path)
        if line and line.startswith(READY_MARK):
            version = re.search(r"version=(\S+)", line)
            state = dataclasses.replace(state, ready=True,
                                        version=version.group(1) if version else NEO4J_VERSION)
            _write_state(directory, state)
            return state
        exited = proc.poll() is not None
        if (line and line.startswith(FAILED_MARK)) or exited:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            _clear_state(directory)
            reason = line[len(FAILED_MARK):].strip() if line else _log_tail(log_path)
            if "Address already in use" in reason or "PortBindException" in reason:
                raise _PortRace(reason)
            raise BackendUnavailable(f"local Neo4j failed to start: {reason[:400]} (full log: {log_path})")
        if time.monotonic() > deadline:
            _terminate(proc.pid, grace_s=20.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            _clear_state(directory)
            tail = _log_tail(log_path)[:300] or "the log is empty"
            raise BackendUnavailable(
                f"local Neo4j did not come up within {launch.timeout_s:.0f} s (killed it); raise --timeout "
                f"or see {log_path} (last lines: {tail})")
        time.sleep(0.2)


def _terminate(pid: int, grace_s: float) -> bool:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL. Returns True when it exited on SIGTERM."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    return False


def stop(*, directory: Path | None = None, grace_s: float = 60.0) -> LocalNeo4jStatus:
    """Stop the local server (SIGTERM, wait ``grace_s``, then SIGKILL); return what was stopped.

    Returns a status with ``running=False``; ``pid`` is set when a server was
    stopped, and ``note`` says how (or that none was running).
    """
    directory = directory or run_dir()
    current = status(directory)
    if not current.running or current.pid is None:
        return dataclasses.replace(current, note=current.note or "no local Neo4j was running")
    clean = _terminate(current.pid, grace_s)
    _clear_state(directory)
    note = "stopped cleanly" if clean else f"did not stop within {grace_s:.0f} s of SIGTERM; killed"
    return dataclasses.replace(current, running=False, reachable=False, note=note)


__all__ = [
    "DEFAULT_PORT", "NEO4J_VERSION", "LocalNeo4jState", "LocalNeo4jStatus", "Toolchain",
    "build_launcher", "cache_dir", "default_data_dir", "find_toolchain", "free_port", "is_built",
    "launcher_dir", "pid_alive", "port_is_free", "run_dir", "start", "status", "stop",
]
