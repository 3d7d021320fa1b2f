"""Shared fixtures: one embedded ArcadeDB server per test session, and the Neo4j settings from CI."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from backend_helpers import embedded_settings_for

from circuitdb.config import Settings


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
