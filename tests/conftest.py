"""Shared fixtures: the configured Neo4j server (``NEO4J_URI``), one embedded ArcadeDB server
per test session, and the CI rule that ``@pytest.mark.neo4j`` tests run, never skip, under ``CI=true``."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
from backend_helpers import embedded_settings_for

from circuitdb.config import Settings

#: Outcomes of tests carrying these markers, summed for the closing summary (CI log proof).
_BACKEND_MARKERS = ("neo4j", "embedded")
_outcomes: Counter[tuple[str, str]] = Counter()


def in_ci() -> bool:
    """``CI=true``: tests needing Neo4j (and the local toolchain) must run, not skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


def pytest_report_header(config: pytest.Config) -> list[str]:
    uri = os.environ.get("NEO4J_URI", "")
    if uri:
        where = uri
    else:
        where = "UNSET (neo4j tests will fail)" if in_ci() else "unset (neo4j tests skip)"
    return [f"neo4j: NEO4J_URI={where}, CI={'true' if in_ci() else 'false'}"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a skipped ``neo4j`` test is a failure: it must run against the real server."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and item.get_closest_marker("neo4j") is not None:
        report.outcome = "failed"
        report.longrepr = f"neo4j test {item.nodeid} skipped under CI=true; .ci/run must start Neo4j and export NEO4J_URI"
    if report.when == "call" or (report.when == "setup" and not report.passed):
        for marker in _BACKEND_MARKERS:
            if item.get_closest_marker(marker) is not None:
                _outcomes[(marker, report.outcome)] += 1


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Say how many backend tests ran, and against what (the CI log's proof)."""
    for marker in _BACKEND_MARKERS:
        counts = {o: _outcomes[(marker, o)] for o in ("passed", "failed", "skipped")}
        if not any(counts.values()):
            continue
        target = os.environ.get("NEO4J_URI", "") or "unset" if marker == "neo4j" else "embedded ArcadeDB"
        terminalreporter.write_line(
            f"{marker}-marked tests: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped (against {target})")


@pytest.fixture(scope="session")
def neo4j_uri() -> str:
    """The real Neo4j's Bolt URI from ``NEO4J_URI``.

    Skips when it is unset outside CI; fails when it is unset under ``CI=true``.
    """
    uri = os.environ.get("NEO4J_URI", "").strip()
    if not uri:
        if in_ci():
            pytest.fail("CI=true but NEO4J_URI is unset: .ci/run must start Neo4j and export NEO4J_URI",
                        pytrace=False)
        pytest.skip("no Neo4j configured: start one ('circuitdb db up --local') and export NEO4J_URI")
    return uri


@pytest.fixture(scope="session")
def neo4j_auth() -> tuple[str, str] | None:
    """``(NEO4J_USERNAME, NEO4J_PASSWORD)`` when a password is set, else ``None`` (auth off)."""
    password = os.environ.get("NEO4J_PASSWORD", "")
    if not password:
        return None
    return (os.environ.get("NEO4J_USERNAME", "") or "neo4j", password)



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


@pytest.fixture(autouse=True)
def _autograd_mode_is_restored() -> Iterator[None]:
    """Commands run in-process here: none may leave autograd switched off for later tests."""
    import torch

    before = torch.is_grad_enabled()
    yield
    after = torch.is_grad_enabled()
    torch.set_grad_enabled(before)
    assert after == before, "this test left torch autograd switched off (use torch.no_grad() as a context)"
