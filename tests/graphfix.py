"""Graph fixtures for the graph-stage tests: one backend per kind (Neo4j, embedded), an empty graph per test.

``graph`` is parametrised over both backends, so every test that uses it runs on Neo4j
(``NEO4J_URI``; marked ``neo4j``) and on the embedded ArcadeDB default (marked ``embedded``),
and the known-graph tests check both against the same hand-computed rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from backend_helpers import cli_env

from circuitdb import catalog
from circuitdb.catalog import CypherStatement
from circuitdb.graph.writer import export_circuits

_WIPE_RELS = CypherStatement("admin", "test_wipe_rels",
                             "MATCH ()-[r]->() WITH r LIMIT 50000 DELETE r RETURN count(*) AS n",
                             "tests: delete up to 50,000 relationships (run until 0)", ())
_WIPE = CypherStatement("admin", "test_wipe",
                        "MATCH (n) WITH n LIMIT 50000 DETACH DELETE n RETURN count(*) AS n",
                        "tests: delete up to 50,000 nodes (run until 0)", ())
_applied: set[str] = set()


def _open_neo4j(request: pytest.FixtureRequest) -> Any:
    from circuitdb.graph.backend import open_backend

    return open_backend(request.getfixturevalue("neo4j_settings"))


def _open_embedded(request: pytest.FixtureRequest) -> Any:
    from circuitdb.graph.backend import open_backend

    return open_backend(request.getfixturevalue("embedded_settings"))


def apply_schema(runner: Any) -> None:
    for name in catalog.names("schema"):
        runner.run(catalog.load("schema", name), {})


@pytest.fixture(scope="module", params=[
    pytest.param("neo4j", marks=pytest.mark.neo4j),
    pytest.param("embedded", marks=pytest.mark.embedded),
])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An open backend of each kind, with the schema applied (module scope)."""
    opener = _open_neo4j if request.param == "neo4j" else _open_embedded
    runner = opener(request)
    try:
        runner.kind = request.param
        apply_schema(runner)
        yield runner
    finally:
        runner.close()


@pytest.fixture
def graph(backend: Any) -> Any:
    """The backend with an empty graph."""
    wipe(backend)
    return backend


def wipe(runner: Any) -> None:
    """Empty the graph in bounded transactions (a large leftover graph must not overflow one)."""
    for stmt in (_WIPE_RELS, _WIPE):
        while True:
            rows = runner.run(stmt, {})
            if not rows or int(rows[0]["n"]) == 0:
                break


def load(runner: Any, circuits: list[Any], **kwargs: Any) -> Any:
    return export_circuits(runner, circuits, **kwargs)


def ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def cli_env_for(settings: Any, **extra: str) -> dict[str, str]:
    """Environment for a ``python -m circuitdb`` subprocess that uses ``settings``' backend."""
    return cli_env(settings, **extra)


def settings_of(request: pytest.FixtureRequest, kind: str) -> Any:
    return request.getfixturevalue("neo4j_settings" if kind == "neo4j" else "embedded_settings")
