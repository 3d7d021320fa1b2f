"""Schema files: validation and the ArcadeDB allow-list, without a server."""

from __future__ import annotations

import pytest

from circuitdb.catalog import CypherStatement
from circuitdb.errors import InputError
from circuitdb.graph.schema import apply_schema, parse_schema_statement, schema_statements


def _stmt(text: str, name: str = "x") -> CypherStatement:
    return CypherStatement("schema", name, text, "", ())


class FakeBackend:
    def __init__(self, backend: str, existing: set[str]):
        self.backend = backend
        self.existing = existing
        self.ran: list[str] = []

    def run(self, statement, params=None):  # type: ignore[no-untyped-def]
        if isinstance(statement, str):  # admin/show_constraints, admin/show_indexes
            return [{"name": n} for n in sorted(self.existing)] if statement.endswith("constraints") else []
        self.ran.append(statement.name)
        return []


def test_every_shipped_schema_file_is_an_idempotent_create():
    statements = schema_statements()
    assert statements and len({s.name for s in statements}) == len(statements)
    assert all(s.kind in ("constraint", "index") for s in statements)


@pytest.mark.parametrize("text", [
    "CREATE CONSTRAINT gene_symbol FOR (g:Gene) REQUIRE g.symbol IS UNIQUE",  # not idempotent
    "MATCH (n) DETACH DELETE n",
    "CREATE INDEX a IF NOT EXISTS FOR (n:A) ON (n.x); CREATE INDEX b IF NOT EXISTS FOR (n:B) ON (n.x)",
])
def test_non_idempotent_or_foreign_statements_are_refused(text):
    with pytest.raises(InputError, match="IF NOT EXISTS"):
        parse_schema_statement(_stmt("// header\n" + text))


def test_arcadedb_skips_only_the_index_kinds_it_rejects():
    statements = [
        parse_schema_statement(_stmt("CREATE CONSTRAINT u IF NOT EXISTS FOR (n:A) REQUIRE n.id IS UNIQUE", "u")),
        parse_schema_statement(_stmt("CREATE FULLTEXT INDEX ft IF NOT EXISTS FOR (n:A) ON EACH [n.name]", "ft")),
        parse_schema_statement(_stmt("CREATE TEXT INDEX t IF NOT EXISTS FOR (n:A) ON (n.name)", "t")),
    ]
    arcade = FakeBackend("arcadedb", existing={"u"})
    items = apply_schema(arcade, statements=statements)
    assert [(i.name, i.status) for i in items] == [("u", "exists"), ("ft", "skipped"), ("t", "created")]
    assert arcade.ran == ["u", "t"]
    neo = FakeBackend("neo4j", existing=set())
    assert [i.status for i in apply_schema(neo, statements=statements)] == ["created"] * 3
    assert neo.ran == ["u", "ft", "t"]
