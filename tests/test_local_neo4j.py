"""``circuitdb db up --local`` / ``status`` / ``down``: the Maven-built local Neo4j.

Starting Neo4j takes seconds to tens of seconds, so one server (auth on) is shared
by the module and started twice in all: once by the fixture, once after SIGTERM.
The launcher build is cached in the user cache dir (``.ci/run`` builds it first).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from circuitdb.graph import local_neo4j

PASSWORD = "circuitdb-test-pw-1"
REPO = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def run_cli(args: list[str], env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "circuitdb", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=str(REPO))


def base_env(run_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NEO4J_PASSWORD", "CIRCUITDB_NEO4J_DATA", "NEO4J_URI")}
    env["CIRCUITDB_NEO4J_RUN_DIR"] = str(run_dir)
    env["COLUMNS"] = "400"  # rich must not wrap the lines the tests read
    # Smaller JVM for tests; C1 only starts faster on a small machine.
    env.setdefault("CIRCUITDB_NEO4J_JAVA_OPTS", "-Xms128m -Xmx512m -XX:TieredStopAtLevel=1")
    env.update(extra)
    return env


def wait_gone(pid: int, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not local_neo4j.pid_alive(pid):
            return True
        time.sleep(0.2)
    return False


# ----------------------------------------------------------------------------- no server needed


def test_up_needs_local_flag(tmp_path: Path) -> None:
    r = run_cli(["db", "up"], base_env(tmp_path / "run"))
    assert r.returncode == 1
    assert "--local" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_port_already_taken_is_one_line_input_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        r = run_cli(["db", "up", "--local", "--port", str(port), "--data", str(tmp_path / "data")],
                    base_env(tmp_path / "run"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert f"port {port}" in lines[0] and "--port" in lines[0]
    assert not (tmp_path / "run" / "state.json").exists(), "nothing half-written"
    assert not (tmp_path / "data").exists()


def test_auth_without_password_is_input_error(tmp_path: Path) -> None:
    r = run_cli(["db", "up", "--local", "--auth", "--data", str(tmp_path / "data")], base_env(tmp_path / "run"))
    assert r.returncode == 2
    assert "NEO4J_PASSWORD" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_status_clears_state_of_a_dead_server(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    state = local_neo4j.LocalNeo4jState(pid=dead.pid, port=1, data_dir=str(tmp_path), auth=True,
                                        uri="bolt://127.0.0.1:1", log=str(run / "neo4j.log"), ready=True)
    (run / "state.json").write_text(json.dumps(state.to_json()))
    r = run_cli(["db", "status", "--json"], base_env(run))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["running"] is False and str(dead.pid) in got["note"]
    assert not (run / "state.json").exists()
    r = run_cli(["db", "down"], base_env(run))
    assert r.returncode == 0 and "no local Neo4j" in r.stderr


def test_compose_file_is_loopback_only_with_apoc_and_healthcheck() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yml").read_text())
    svc = compose["services"]["neo4j"]
    assert svc["image"].startswith("neo4j:5.26") and "enterprise" not in svc["image"]
    assert "apoc" in svc["environment"]["NEO4J_PLUGINS"]
    assert "${NEO4J_PASSWORD" in svc["environment"]["NEO4J_AUTH"]
    assert svc["ports"] and all(str(p).startswith("127.0.0.1:") for p in svc["ports"])
    assert "test" in svc["healthcheck"]


def test_launcher_project_ships_as_package_data() -> None:
    files = dict(local_neo4j._project_files())
    assert "pom.xml" in files and local_neo4j.NEO4J_VERSION.encode() in files["pom.xml"]
    assert any(name.endswith("CircuitdbNeo4j.java") for name in files)


# ----------------------------------------------------------------------------- one real server


@pytest.fixture(scope="module")
def toolchain() -> local_neo4j.Toolchain:
    try:
        return local_neo4j.find_toolchain(need_mvn=not local_neo4j.is_built())
    except Exception as exc:  # BackendUnavailable: no JDK 17 / Maven here
        if in_ci():
            pytest.fail(f"CI=true but the local Neo4j toolchain is missing: {exc}", pytrace=False)
        pytest.skip(f"local Neo4j toolchain missing: {exc}")


@pytest.fixture(scope="module")
def server(toolchain: local_neo4j.Toolchain, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A local Neo4j with auth on, started through the CLI; stopped at module end."""
    base = tmp_path_factory.mktemp("local-neo4j")
    env = base_env(base / "run", NEO4J_PASSWORD=PASSWORD)
    r = run_cli(["db", "up", "--local", "--auth", "--data", str(base / "data"), "--json"], env)
    assert r.returncode == 0, r.stderr
    info = {"state": json.loads(r.stdout), "stderr": r.stderr, "env": env, "base": base}
    yield info
    local_neo4j.stop(directory=base / "run", grace_s=30)


@pytest.mark.slow
def test_up_picks_a_port_and_status_reports_auth(server) -> None:  # type: ignore[no-untyped-def]
    state = server["state"]
    assert state["auth"] is True and state["ready"] is True
    assert state["uri"] == f"bolt://127.0.0.1:{state['port']}"
    if state["port"] != local_neo4j.DEFAULT_PORT:
        assert f"using free port {state['port']}" in server["stderr"]
    r = run_cli(["db", "status", "--json"], server["env"])
    got = json.loads(r.stdout)
    assert got["running"] is True and got["auth"] is True and got["reachable"] is True
    assert got["port"] == state["port"] and got["data_dir"] == str((server["base"] / "data").resolve())
    r = run_cli(["db", "status"], server["env"])
    assert "auth on" in r.stderr and state["uri"] in r.stderr


@pytest.mark.slow
def test_driver_needs_the_password(server) -> None:  # type: ignore[no-untyped-def]
    import neo4j

    uri = server["state"]["uri"]
    for auth in [("neo4j", "wrong-password"), None]:
        with neo4j.GraphDatabase.driver(uri, auth=auth) as driver:
            with pytest.raises(neo4j.exceptions.AuthError):
                driver.verify_connectivity()
    with neo4j.GraphDatabase.driver(uri, auth=("neo4j", PASSWORD)) as driver:
        records = driver.execute_query("CALL dbms.components() YIELD name, versions, edition "
                                       "RETURN name, versions[0] AS v, edition").records
    assert records[0]["v"] == local_neo4j.NEO4J_VERSION and records[0]["edition"] == "community"


@pytest.mark.slow
def test_second_up_is_a_noop_and_other_settings_are_refused(server) -> None:  # type: ignore[no-untyped-def]
    base, env = server["base"], server["env"]
    r = run_cli(["db", "up", "--local", "--auth", "--data", str(base / "data")], env)
    assert r.returncode == 0 and "already running" in r.stderr
    r = run_cli(["db", "up", "--local", "--auth", "--data", str(base / "other")], env)
    assert r.returncode == 2 and "db down" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_sigterm_keeps_data_and_restart_needs_no_maven(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import neo4j

    state, env, base = server["state"], server["env"], server["base"]
    marker = uuid.uuid4().hex
    with neo4j.GraphDatabase.driver(state["uri"], auth=("neo4j", PASSWORD)) as driver:
        driver.execute_query("CREATE (:CircuitdbProbe {marker: $m})", m=marker)

    os.kill(state["pid"], signal.SIGTERM)
    assert wait_gone(state["pid"]), "local Neo4j did not exit on SIGTERM"
    r = run_cli(["db", "status", "--json"], env)
    assert json.loads(r.stdout)["running"] is False

    # A PATH with java but no mvn: the cached launcher must start without Maven (no network).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(Path(local_neo4j.find_toolchain(need_mvn=False).java).resolve())
    env2 = {k: v for k, v in env.items() if k != "JAVA_HOME"}
    env2["PATH"] = str(bin_dir)
    r = run_cli(["db", "up", "--local", "--auth", "--data", str(base / "data"), "--json"], env2)
    assert r.returncode == 0, r.stderr
    assert "building" not in r.stderr
    again = json.loads(r.stdout)
    server["state"] = again
    with neo4j.GraphDatabase.driver(again["uri"], auth=("neo4j", PASSWORD)) as driver:
        records = driver.execute_query("MATCH (n:CircuitdbProbe {marker: $m}) RETURN count(n) AS c", m=marker).records
    assert records[0]["c"] == 1


@pytest.mark.slow
def test_down_stops_cleanly_and_frees_the_port(server) -> None:  # type: ignore[no-untyped-def]
    state, env = server["state"], server["env"]
    r = run_cli(["db", "down"], env)
    assert r.returncode == 0, r.stderr
    assert "stopped cleanly" in r.stderr
    assert not local_neo4j.pid_alive(state["pid"])
    assert local_neo4j.port_is_free(state["port"])
    assert json.loads(run_cli(["db", "status", "--json"], env).stdout)["running"] is False
    log = Path(state["log"]).read_text()
    assert "CIRCUITDB_NEO4J_STOPPED" in log


@pytest.mark.slow
def test_never_ready_fails_loudly_and_leaves_nothing_running(toolchain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    r = run_cli(["db", "up", "--local", "--data", str(tmp_path / "data"), "--port", str(local_neo4j.free_port()),
                 "--timeout", "1"], base_env(run))
    assert r.returncode == 3, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "did not come up within 1 s" in last and "--timeout" in last and str(run / "neo4j.log") in last
    assert not (run / "state.json").exists()
    assert local_neo4j.status(run).running is False


@pytest.mark.neo4j
def test_configured_neo4j_answers(neo4j_uri: str, neo4j_auth: tuple[str, str] | None) -> None:
    """The server .ci/run started (NEO4J_URI) is a real Neo4j 5 that runs Cypher."""
    import neo4j

    with neo4j.GraphDatabase.driver(neo4j_uri, auth=neo4j_auth) as driver:
        info = driver.get_server_info()
        records = driver.execute_query("UNWIND range(1, 3) AS x RETURN sum(x) AS s").records
    assert info.agent.startswith("Neo4j/5.")
    assert records[0]["s"] == 6
