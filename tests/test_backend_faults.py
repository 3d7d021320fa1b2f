"""Faults: unreachable URI, wrong password, server stopped mid-command, embedded server failing to start.

Each ends in a one-line error naming the URI (never the password) and exit 3.
"""

from __future__ import annotations

import os

import pytest

from circuitdb.errors import BackendUnavailable
from circuitdb.graph import arcade
from circuitdb.graph.arcade_server import free_port
from circuitdb.graph.backend import open_backend
from circuitdb.graph.example import example_graph
from backend_helpers import cli_env, embedded_settings_for, run_cli

SECRET = "s3cret-Pa55word-never-shown"


def assert_one_line_exit_3(result, *must_contain: str) -> str:
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr  # progress lines may precede it
    for text in must_contain:
        assert text in errors[0], errors[0]
    assert SECRET not in result.stdout + result.stderr
    return errors[0]


@pytest.mark.parametrize("command", [["db", "ping"], ["db", "init"], ["demo"]])
def test_unreachable_uri_is_one_line_exit_3(tmp_path, command):
    uri = f"bolt://127.0.0.1:{free_port()}"  # nothing listens there
    env = cli_env(embedded_settings_for(tmp_path), NEO4J_USERNAME="neo4j", NEO4J_PASSWORD=SECRET)
    result = run_cli(["--neo4j-uri", uri, *command], env)
    line = assert_one_line_exit_3(result, uri)
    if command[0] == "db":
        assert len(result.stderr.strip().splitlines()) == 1
    assert "unavailable" in line and "NEO4J_URI" in line  # says what to do


@pytest.mark.embedded
def test_wrong_password_is_one_line_exit_3(embedded_settings, tmp_path):
    server = arcade.ensure_server(embedded_settings.embedded_dir)  # the embedded server also checks Bolt auth
    env = cli_env(embedded_settings_for(tmp_path), NEO4J_URI=server.uri, NEO4J_USERNAME="root",
                  NEO4J_PASSWORD=SECRET)
    line = assert_one_line_exit_3(run_cli(["db", "ping"], env), server.uri)
    assert "authentication failed" in line and "NEO4J_PASSWORD" in line
    assert server.password not in line


@pytest.mark.neo4j
def test_wrong_password_on_neo4j_is_one_line_exit_3(neo4j_settings, tmp_path):
    # A server without auth accepts any password; only a server with auth can refuse one.
    probe = neo4j_settings.with_(neo4j_password=SECRET, neo4j_username="no-such-user-circuitdb")
    try:
        with open_backend(probe):
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail("the CI Neo4j accepts any password: .ci/run must start it with --auth")
            pytest.skip("this Neo4j runs without authentication (db up --local without --auth)")
    except BackendUnavailable:
        pass
    env = cli_env(embedded_settings_for(tmp_path), NEO4J_URI=neo4j_settings.neo4j_uri,
                  NEO4J_USERNAME="no-such-user-circuitdb", NEO4J_PASSWORD=SECRET)
    line = assert_one_line_exit_3(run_cli(["db", "ping"], env), neo4j_settings.neo4j_uri)
    assert "authentication failed" in line


@pytest.mark.embedded
def test_server_stopped_mid_command_is_backend_unavailable(tmp_path):
    settings = embedded_settings_for(tmp_path / "mid", retry_s=1.0)
    rows_sent = []

    def rows():
        for i, row in enumerate(example_graph().genes * 50):
            if i == 40:  # two batches of 20 are committed; then the server goes away
                arcade.stop_server(settings.embedded_dir)
            rows_sent.append(row)
            yield {"symbol": f"{row['symbol']}-{i}"}

    try:
        graph = open_backend(settings)
        uri = graph.uri
        with pytest.raises(BackendUnavailable) as err:
            graph.write_batches("write/example_genes", rows(), batch_size=20)
        graph.close()
    finally:
        arcade.stop_server(settings.embedded_dir)
    message = str(err.value)
    assert err.value.exit_code == 3
    assert uri in message and "\n" not in message
    assert "restart the embedded server" in message
    assert len(rows_sent) < 100  # it stopped at the failing batch


@pytest.mark.embedded
def test_embedded_server_that_cannot_start_is_one_line_exit_3(tmp_path):
    env = cli_env(embedded_settings_for(tmp_path / "bad"), CIRCUITDB_EMBEDDED_HEAP="lots")  # invalid -Xmx
    line = assert_one_line_exit_3(run_cli(["db", "ping"], env), "embedded graph server")
    assert "server.log" in line
    assert arcade.read_state(tmp_path / "bad") is None  # nothing left running


def test_corrupt_embedded_credentials_is_one_line_exit_3(tmp_path):
    data = tmp_path / "corrupt"
    data.mkdir()
    (data / "credentials.json").write_text("{not json")
    line = assert_one_line_exit_3(run_cli(["db", "ping"], cli_env(embedded_settings_for(data))), "credentials")
    assert "delete the file" in line
