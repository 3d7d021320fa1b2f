"""Shared fixtures: one embedded ArcadeDB server per test session, and the Neo4j settings from CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from circuitdb.config import Settings

#: Small heap and a self-stop after 10 idle minutes, so a crashed test run leaks nothing for long.
EMBEDDED_HEAP = "512m"
EMBEDDED_IDLE_S = 600.0


def embedded_settings_for(data_dir: Path, **changes: object) -> Settings:
    """Settings for an embedded server on ``data_dir`` (no Neo4j URI)."""
    return Settings(neo4j_uri=None, embedded_dir=data_dir, embedded_heap=EMBEDDED_HEAP,
                    embedded_idle_s=EMBEDDED_IDLE_S).with_(**changes)


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a ``python -m circuitdb`` subprocess that uses ``settings``' backend."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_") and not k.startswith("CIRCUITDB_")}
    env["CIRCUITDB_EMBEDDED_DIR"] = str(settings.embedded_dir)
    env["CIRCUITDB_EMBEDDED_HEAP"] = settings.embedded_heap
    env["CIRCUITDB_EMBEDDED_IDLE_S"] = str(settings.embedded_idle_s)
    if settings.neo4j_uri:
        env["NEO4J_URI"] = settings.neo4j_uri
        env["NEO4J_USERNAME"] = settings.neo4j_username
        if settings.neo4j_password is not None:
            env["NEO4J_PASSWORD"] = settings.neo4j_password
        if settings.neo4j_database:
            env["NEO4J_DATABASE"] = settings.neo4j_database
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120.0):  # type: ignore[no-untyped-def]
    import subprocess

    return subprocess.run([sys.executable, "-m", "circuitdb", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="session")
def embedded_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One embedded ArcadeDB server for the whole session on a temp dir; stopped at the end."""
    from circuitdb.graph import arcade

    settings = embedded_settings_for(tmp_path_factory.mktemp("arcadedb"))
    arcade.ensure_server(settings.embedded_dir, heap=settings.embedded_heap, idle_s=settings.embedded_idle_s)
    try:
        yield settings
    finally:
        arcade.stop_server(settings.embedded_dir)


@pytest.fixture
def embedded_graph(embedded_settings: Settings):  # type: ignore[no-untyped-def]
    """An open backend on the session's embedded server, with an empty graph (schema kept)."""
    from circuitdb.graph.backend import open_backend

    with open_backend(embedded_settings) as graph:
        graph.run("admin/delete_all")
        yield graph


@pytest.fixture(scope="session")
def neo4j_settings() -> Settings:
    """Settings for the real Neo4j that CI starts (``NEO4J_URI``); skips without one, fails under CI=true."""
    uri = os.environ.get("NEO4J_URI")
    if not uri:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("NEO4J_URI is not set under CI=true: .ci/run must start Neo4j before the tests")
        pytest.skip("needs a real Neo4j: set NEO4J_URI (bash .ci/run does)")
    return Settings.from_env()
