"""Driver exceptions -> one-line circuitdb errors (exit codes, URI named, password scrubbed); no server needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from neo4j import exceptions as neo4j_exc

from circuitdb.errors import BackendUnavailable, InputError
from circuitdb.graph.backend import translate_error

URI = "bolt://db.example:7687"
SECRET = "pw-9f8e7d6c"


def _translate(exc: BaseException, embedded_dir: Path | None = None):  # type: ignore[no-untyped-def]
    return translate_error(exc, uri=URI, user="alice", database="circuits", what="library/q",
                           scrub=lambda t: " ".join(str(t).split()).replace(SECRET, "***"),
                           embedded_dir=embedded_dir)


@pytest.mark.parametrize("exc, reason", [
    (neo4j_exc.ServiceUnavailable("Couldn't connect to db.example:7687 (reason [Errno 111] Connection refused)"),
     "connection refused"),
    (neo4j_exc.SessionExpired("Failed to read from defunct connection IPv4Address(('db.example', 7687))"),
     "connection lost"),
    (ConnectionResetError(104, "Connection reset by peer"), "Connection reset by peer"),
    (neo4j_exc.TransientError("still locked"), "unavailable during library/q"),
])
def test_connection_failures_are_backend_unavailable(exc, reason):
    err = _translate(exc)
    assert isinstance(err, BackendUnavailable) and err.exit_code == 3
    text = str(err)
    assert URI in text and reason in text and "\n" not in text and "NEO4J_URI" in text


def test_auth_failure_names_user_and_fix_but_not_password():
    err = _translate(neo4j_exc.AuthError(f"bad credentials {SECRET}"))
    assert isinstance(err, BackendUnavailable) and err.exit_code == 3
    assert "authentication failed" in str(err) and "'alice'" in str(err) and "NEO4J_PASSWORD" in str(err)
    assert SECRET not in str(err)
    embedded = _translate(neo4j_exc.AuthError("no"), embedded_dir=Path("/data/emb"))
    assert "embedded graph server" in str(embedded) and "/data/emb/server.json" in str(embedded)


def test_query_errors_are_input_errors():
    err = _translate(neo4j_exc.CypherSyntaxError("Invalid input 'RETRUN'"))
    assert isinstance(err, InputError) and err.exit_code == 2 and "library/q" in str(err) and URI in str(err)


def test_unexpected_exceptions_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        _translate(ZeroDivisionError("bug"))
