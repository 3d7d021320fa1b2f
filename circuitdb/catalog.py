"""Cypher statements shipped as package data, one statement per ``.cypher`` file.

Files live in ``cypher/{schema,library,write,admin}/NAME.cypher`` (installed as
``circuitdb.cypher``). Each starts with a ``//`` header comment that names its
parameters (``// params: $a, $b``) and what it returns. Nothing here builds
Cypher from values: callers pass values as ``$parameters``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from circuitdb.errors import InputError

SECTIONS = ("schema", "library", "write", "admin")
_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class CypherStatement:
    """One shipped statement: its text, header and the ``$parameters`` it uses."""

    section: str
    name: str
    text: str
    description: str
    params: tuple[str, ...] = field(default_factory=tuple)


def _root():  # type: ignore[no-untyped-def]
    return resources.files("circuitdb.cypher")


@lru_cache(maxsize=None)
def names(section: str) -> tuple[str, ...]:
    """Sorted statement names in a section (file stems)."""
    if section not in SECTIONS:
        raise InputError(f"unknown cypher section {section!r}; use one of {', '.join(SECTIONS)}")
    folder = _root().joinpath(section)
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.name[: -len(".cypher")] for p in folder.iterdir() if p.name.endswith(".cypher")))


@lru_cache(maxsize=None)
def load(section: str, name: str) -> CypherStatement:
    """Load ``cypher/{section}/{name}.cypher`` (cached)."""
    if name not in names(section):
        known = ", ".join(names(section)) or "none"
        raise InputError(f"no cypher statement {section}/{name}; known: {known}")
    text = _root().joinpath(section, f"{name}.cypher").read_text(encoding="utf-8")
    header = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            header.append(stripped.lstrip("/").strip())
        elif stripped:
            break
    description = " ".join(h for h in header if not h.lower().startswith(("params:", "parameters:", "returns:")))
    body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))
    params = tuple(dict.fromkeys(_PARAM_RE.findall(body)))
    return CypherStatement(section, name, text, description, params)
