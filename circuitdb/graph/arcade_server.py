"""The embedded ArcadeDB server, run as a child process with its Bolt endpoint on loopback.

``python -m circuitdb.graph.arcade_server --data DIR`` starts an ArcadeDB server
(from the ``arcadedb-embedded`` wheel, which bundles its own JRE) with the Bolt
protocol plugin on ``127.0.0.1`` and a free port, creates the ``circuitdb``
database if needed, writes ``DIR/server.json`` (pid, ports, database) once it
accepts connections, and stays up until

* SIGTERM / SIGINT (``circuitdb.graph.arcade.stop_server``), or
* ``--idle-timeout`` seconds pass with no open Bolt connection and no client
  touching ``DIR/last_used`` (0 = never).

It is a separate process on purpose: a JVM started inside a Python process does
not survive ``fork()`` (DataLoader workers, torchrun) and shares the address
space with torch. Nothing here imports torch.

Layout of ``DIR``::

    server.json        state of the running server (removed on clean exit)
    credentials.json   root user and password of this data dir (mode 0600)
    server.log         stdout/stderr of the child
    last_used          touched by clients; its mtime feeds the idle timeout
    server/            ArcadeDB's root: databases/, config/, log/
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

STATE_FILE = "server.json"
CREDENTIALS_FILE = "credentials.json"
LOG_FILE = "server.log"
LAST_USED_FILE = "last_used"
ROOT_DIR = "server"
DATABASE = "circuitdb"
HOST = "127.0.0.1"
BOLT_PLUGIN = "Bolt:com.arcadedb.bolt.BoltProtocolPlugin"
#: Marker in the child's command line, used to recognise it by pid.
MODULE = "circuitdb.graph.arcade_server"


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def established_connections(port: int) -> int:
    """Open TCP connections to local ``port`` (Linux ``/proc/net/tcp*``; -1 if unknown)."""
    total, seen = 0, False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        seen = True
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                total += 1
    return total if seen else -1


def write_json_atomic(path: Path, data: dict, mode: int = 0o644) -> None:
    """Write JSON to a temp file and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="data directory (state, credentials, databases)")
    ap.add_argument("--port", type=int, default=0, help="Bolt port on 127.0.0.1 (0: a free one)")
    ap.add_argument("--http-port", type=int, default=0, help="ArcadeDB HTTP port on 127.0.0.1 (0: a free one)")
    ap.add_argument("--heap", default="1g", help="Java heap (-Xmx), e.g. 512m, 2g")
    ap.add_argument("--idle-timeout", type=float, default=1800.0, help="stop after this many idle seconds; 0 = never")
    ap.add_argument("--poll", type=float, default=5.0, help="seconds between idle checks")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    data = args.data.expanduser().resolve()
    root = data / ROOT_DIR
    (root / "log").mkdir(parents=True, exist_ok=True)
    creds = json.loads((data / CREDENTIALS_FILE).read_text(encoding="utf-8"))
    os.chdir(root)  # ArcadeDB writes ./log/arcadedb.log relative to the working directory
    os.environ.setdefault("ARCADEDB_JVM_ERROR_FILE", str(root / "log" / "hs_err_pid%p.log"))

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    import arcadedb_embedded as adb  # noqa: PLC0415 - heavy (JVM); only in the child

    server = None
    bolt_port = http_port = 0
    last_error: Exception | None = None
    for _attempt in range(3):
        bolt_port = args.port or free_port()
        http_port = args.http_port or free_port()
        config = {
            "host": "localhost",
            "bolt_host": HOST,
            "http_port": http_port,
            "server_plugins": BOLT_PLUGIN,
            "bolt_port": bolt_port,
        }
        try:
            # -Xrs: the JVM leaves SIGTERM/SIGINT to Python, so shutdown runs server.stop() below
            # instead of JVM shutdown hooks calling back into a Python that is tearing down.
            candidate = adb.ArcadeDBServer(
                root_path=str(root),
                root_password=creds["password"],
                config=config,
                jvm_kwargs={"heap_size": args.heap, "jvm_args": ["-Xrs"]},
            )
            candidate.start()
            server = candidate
            break
        except adb.ArcadeDBError as exc:  # port taken between free_port() and bind: try others
            last_error = exc
            if args.port or args.http_port or stop.is_set():
                break
    if server is None:
        print(f"circuitdb-arcadedb failed to start: {last_error}", file=sys.stderr, flush=True)
        return 1

    state_path = data / STATE_FILE
    try:
        server.create_database(DATABASE)  # opens it when it exists already
        state = {
            "pid": os.getpid(),
            "host": HOST,
            "bolt_port": bolt_port,
            "http_port": http_port,
            "database": DATABASE,
            "user": creds["user"],
            "version": _engine_version(adb),
            "started_at": time.time(),
            "idle_timeout_s": args.idle_timeout,
            "data_dir": str(data),
        }
        write_json_atomic(state_path, state)
        print(f"circuitdb-arcadedb ready bolt://{HOST}:{bolt_port} pid={os.getpid()}", flush=True)
        last_active = next_check = time.time()
        # Short waits: SIGTERM may land on a JVM thread, and the main thread only sees the
        # Python-level handler once it wakes up.
        while not stop.wait(0.2):
            now = time.time()
            if args.idle_timeout <= 0 or now < next_check:
                continue
            next_check = now + args.poll
            if established_connections(bolt_port) > 0:
                last_active = now
            try:
                last_active = max(last_active, (data / LAST_USED_FILE).stat().st_mtime)
            except OSError:
                pass
            if now - last_active > args.idle_timeout:
                print(f"circuitdb-arcadedb idle for {args.idle_timeout:.0f}s, stopping", flush=True)
                break
    finally:
        try:
            if json.loads(state_path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                state_path.unlink()
        except (OSError, ValueError):
            pass
        server.stop()
        print("circuitdb-arcadedb stopped", flush=True)
    # The databases are closed; skip the JVM's slow teardown at interpreter exit (seconds).
    sys.stderr.flush()
    os._exit(0)


def _engine_version(adb: object) -> str:
    try:
        import jpype  # noqa: PLC0415

        return str(jpype.JClass("com.arcadedb.Constants").getRawVersion())
    except Exception:  # noqa: BLE001 - informative only
        return str(getattr(adb, "__version__", "unknown"))


if __name__ == "__main__":
    raise SystemExit(main())
