from pathlib import Path

import pytest

from circuitdb.config import Settings, default_embedded_dir, redact_uri
from circuitdb.errors import InputError


def test_from_env_reads_neo4j_variables_and_overrides_win():
    env = {"NEO4J_URI": "bolt://db.example:7687", "NEO4J_USERNAME": "alice", "NEO4J_PASSWORD": "pw-123456",
           "NEO4J_DATABASE": "circuits"}
    s = Settings.from_env(env)
    assert (s.backend, s.neo4j_uri, s.neo4j_username, s.neo4j_password, s.neo4j_database) == (
        "neo4j", "bolt://db.example:7687", "alice", "pw-123456", "circuits")
    s2 = Settings.from_env(env, neo4j_uri="neo4j://other:7688")
    assert s2.neo4j_uri == "neo4j://other:7688"
    assert Settings.from_env(env, neo4j_uri=None).neo4j_uri == "bolt://db.example:7687"  # None = not given


def test_no_uri_means_embedded_with_user_data_dir(tmp_path):
    s = Settings.from_env({"CIRCUITDB_HOME": str(tmp_path)})
    assert s.backend == "embedded" and s.neo4j_username == "neo4j" and s.neo4j_password is None
    assert s.embedded_dir == tmp_path / "embedded"
    assert Settings.from_env({"CIRCUITDB_EMBEDDED_DIR": str(tmp_path / "x")}).embedded_dir == tmp_path / "x"
    assert default_embedded_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "circuitdb" / "embedded"
    assert default_embedded_dir({}) == Path.home() / ".local" / "share" / "circuitdb" / "embedded"


def test_password_never_shown():
    s = Settings(neo4j_uri="bolt://u:hunter2-pw@h:7687", neo4j_password="hunter2-pw")
    for text in (repr(s), str(s), repr(s.redacted())):
        assert "hunter2-pw" not in text
    assert s.redacted()["neo4j_password"] == "***"
    assert redact_uri("bolt://u:p@h:1/x") == "bolt://***@h:1/x"


@pytest.mark.parametrize("uri", ["http://localhost:7474", "localhost:7687", "bolt//x"])
def test_bad_uri_is_input_error(uri):
    with pytest.raises(InputError, match="bolt://"):
        Settings(neo4j_uri=uri)


def test_bad_idle_env_is_input_error():
    with pytest.raises(InputError, match="CIRCUITDB_EMBEDDED_IDLE_S"):
        Settings.from_env({"CIRCUITDB_EMBEDDED_IDLE_S": "soon"})
