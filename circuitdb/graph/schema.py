"""Apply ``cypher/schema/*.cypher`` (constraints and indexes) idempotently, on Neo4j and ArcadeDB.

Every schema file holds one ``CREATE [kind] CONSTRAINT|INDEX name IF NOT EXISTS FOR ...``
statement; files are applied in name order. ArcadeDB's Cypher accepts the same
statements over Bolt (it maps a uniqueness constraint to a unique index on the
vertex type, see ``circuitdb/graph/ARCADEDB.md``), so one set of files serves both.
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
    r"^\s*CREATE\s+(?:(?:RANGE|TEXT|POINT|LOOKUP|FULLTEXT|VECTOR)\s+)?(CONSTRAINT|INDEX)\s+([A-Za-z_][A-Za-z0-9_]*)"
    r"\s+IF\s+NOT\s+EXISTS\s+FOR\s",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SchemaItem:
    """One applied schema statement and whether this run created it."""

    name: str
    kind: str  # "constraint" | "index"
    file: str
    created: bool


def _body(stmt: CypherStatement) -> str:
    return "\n".join(line for line in stmt.text.splitlines() if not line.strip().startswith("//")).strip()


def schema_statements() -> list[tuple[str, str, CypherStatement]]:
    """``(name, kind, statement)`` of every schema file, checked to be an idempotent CREATE.

    Raises
    ------
    InputError
        A schema file is not a single ``CREATE ... IF NOT EXISTS`` statement.
    """
    out = []
    for file in catalog.names("schema"):
        stmt = catalog.load("schema", file)
        body = _body(stmt)
        match = _SCHEMA_RE.match(body)
        if match is None or ";" in body.rstrip(";"):
            raise InputError(
                f"cypher/schema/{file}.cypher must hold one 'CREATE CONSTRAINT|INDEX name IF NOT EXISTS FOR ...' "
                "statement; fix the file"
            )
        out.append((match.group(2), match.group(1).lower(), stmt))
    return out


def existing_schema(backend: GraphBackend) -> set[str]:
    """Names of the constraints and indexes present on the server."""
    names = {str(row["name"]) for row in backend.run("admin/show_constraints")}
    names |= {str(row["name"]) for row in backend.run("admin/show_indexes")}
    return names


def apply_schema(backend: GraphBackend, on_item: Callable[[SchemaItem], None] | None = None) -> list[SchemaItem]:
    """Create every constraint and index of ``cypher/schema`` that is missing.

    Parameters
    ----------
    backend
        An open graph backend.
    on_item
        Called after each statement (progress).

    Returns
    -------
    list of SchemaItem
        One per schema file, ``created=False`` where it existed already.
    """
    statements = schema_statements()
    before = existing_schema(backend)
    items = []
    for name, kind, stmt in statements:
        backend.run(stmt)
        item = SchemaItem(name=name, kind=kind, file=stmt.name, created=name not in before)
        items.append(item)
        if on_item is not None:
            on_item(item)
    return items
