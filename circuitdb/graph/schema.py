"""Apply ``cypher/schema/*.cypher`` (constraints and indexes) idempotently, on Neo4j and ArcadeDB.

Every schema file holds one ``CREATE [kind] CONSTRAINT|INDEX name IF NOT EXISTS FOR ...``
statement; files are applied in name order. ArcadeDB's Cypher accepts the same
statements over Bolt (it maps a uniqueness constraint to a unique index on the
vertex type, see ``circuitdb/graph/ARCADEDB.md``), so one set of files serves both.
The one translation is an allow-list: index kinds ArcadeDB's Cypher rejects
(``FULLTEXT``, ``LOOKUP``, ``VECTOR``) are skipped there and reported as such.
Use only what Neo4j *community* accepts: ``IS UNIQUE`` constraints and
range/text indexes (existence, type and key constraints are Enterprise-only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from circuitdb import catalog
from circuitdb.catalog import CypherStatement
from circuitdb.errors import InputError
from circuitdb.graph.backend import GraphBackend

_SCHEMA_RE = re.compile(
    r"^\s*CREATE\s+(?:(RANGE|TEXT|POINT|LOOKUP|FULLTEXT|VECTOR)\s+)?(CONSTRAINT|INDEX)\s+([A-Za-z_][A-Za-z0-9_]*)"
    r"\s+IF\s+NOT\s+EXISTS\s+FOR\s",
    re.IGNORECASE,
)

#: Index kinds that ArcadeDB 26.10's Cypher rejects ("Only standard, RANGE and TEXT index types are supported").
ARCADEDB_UNSUPPORTED = frozenset({"FULLTEXT", "LOOKUP", "VECTOR"})


@dataclass(frozen=True)
class SchemaItem:
    """One schema statement and what this run did with it."""

    name: str
    kind: str  # "constraint" | "index"
    file: str
    status: str  # "created" | "exists" | "skipped" (unsupported by this backend)

    @property
    def created(self) -> bool:
        return self.status == "created"


@dataclass(frozen=True)
class SchemaStatement:
    """A validated schema file: constraint/index name, kind, index flavour (``""`` = default) and statement."""

    name: str
    kind: str
    flavour: str
    statement: CypherStatement


def _body(stmt: CypherStatement) -> str:
    return "\n".join(line for line in stmt.text.splitlines() if not line.strip().startswith("//")).strip()


def schema_statements() -> list[SchemaStatement]:
    """Every schema file, checked to be one idempotent ``CREATE ... IF NOT EXISTS``.

    Raises
    ------
    InputError
        A schema file is not a single ``CREATE ... IF NOT EXISTS`` statement.
    """
    return [parse_schema_statement(catalog.load("schema", file)) for file in catalog.names("schema")]


def parse_schema_statement(stmt: CypherStatement) -> SchemaStatement:
    """Check one schema statement and read its name and kind (see :func:`schema_statements`)."""
    body = _body(stmt)
    match = _SCHEMA_RE.match(body)
    if match is None or ";" in body.rstrip(";"):
        raise InputError(
            f"cypher/schema/{stmt.name}.cypher must hold one 'CREATE CONSTRAINT|INDEX name IF NOT EXISTS FOR ...' "
            "statement; fix the file"
        )
    return SchemaStatement(match.group(3), match.group(2).lower(), (match.group(1) or "").upper(), stmt)


def existing_schema(backend: GraphBackend) -> set[str]:
    """Names of the constraints and indexes present on the server."""
    names = {str(row["name"]) for row in backend.run("admin/show_constraints")}
    names |= {str(row["name"]) for row in backend.run("admin/show_indexes")}
    return names


def apply_schema(
    backend: GraphBackend,
    on_item: Callable[[SchemaItem], None] | None = None,
    *,
    statements: list[SchemaStatement] | None = None,
) -> list[SchemaItem]:
    """Create every constraint and index of ``cypher/schema`` that is missing.

    Parameters
    ----------
    backend
        An open graph backend.
    on_item
        Called after each statement (progress).
    statements
        Statements to apply instead of the shipped ``cypher/schema`` files.

    Returns
    -------
    list of SchemaItem
        One per statement: ``created``, ``exists`` (was there already) or ``skipped``
        (an index kind this backend does not support).
    """
    statements = schema_statements() if statements is None else statements
    before = existing_schema(backend)
    items = []
    for item_stmt in statements:
        if backend.backend == "arcadedb" and item_stmt.flavour in ARCADEDB_UNSUPPORTED:
            status = "skipped"
        else:
            backend.run(item_stmt.statement)
            status = "exists" if item_stmt.name in before else "created"
        item = SchemaItem(item_stmt.name, item_stmt.kind, item_stmt.statement.name, status)
        items.append(item)
        if on_item is not None:
            on_item(item)
    return items
