"""Helpers for backend tests (plain functions; the fixtures live in conftest.py).

Import as ``from backend_helpers import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m circuitdb ARGS`` with ``env``; output captured as text."""
    return subprocess.run([sys.executable, "-m", "circuitdb", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``python -m circuitdb`` subprocess with its own (not yet started) embedded graph."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_") and not k.startswith("CIRCUITDB_")}
    env["CIRCUITDB_EMBEDDED_DIR"] = str(tmp_path / "db")
    env.update(extra)
    return env
