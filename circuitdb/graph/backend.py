"""One interface over Bolt for both graph backends: Neo4j at a URI, or the embedded ArcadeDB.

>>> from circuitdb.config import Settings
>>> from circuitdb.graph.backend import open_backend
>>> with open_backend(Settings.from_env()) as graph:                    # doctest: +SKIP
...     graph.run("schema/gene_symbol")
...     graph.write_batches("write/example_genes", rows, batch_size=1000)
...     rows = graph.run("library/example_gene_paths", {"cell_type": "CD19+ B", "min_weight": 0.1})

Statements come from :mod:`circuitdb.catalog` (a :class:`CypherStatement` or a
``"section/name"`` string; a bare name means ``library/name``); values only
ever travel as ``$parameters``. Driver failures leave as one-line
:class:`~circuitdb.errors.BackendUnavailable` (exit 3: unreachable, lost
connection, wrong credentials) or :class:`~circuitdb.errors.InputError` (exit 2:
the server rejected a query or its parameters), naming the URI and never the
password.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import neo4j
from neo4j import exceptions as neo4j_exc

from circuitdb import __version__
from circuitdb.catalog import CypherStatement, load
from circuitdb.config import Settings, redact_uri
from circuitdb.errors import BackendUnavailable, CircuitDBError, InputError

BackendName = Literal["neo4j", "arcadedb"]

_ARCADE_AGENT = re.compile(r"ArcadeDB\s+([0-9][\w.\-]*)")


@dataclass(frozen=True)
class BackendInfo:
    """What ``circuitdb db ping`` reports."""

    backend: BackendName
    uri: str
    agent: str
    version: str
    database: str | None
    protocol: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "uri": self.uri,
            "agent": self.agent,
            "version": self.version,
            "database": self.database,
            "protocol": self.protocol,
        }


@dataclass
class WriteSummary:
    """Totals of a :meth:`GraphBackend.write_batches` call."""

    rows: int = 0
    batches: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    def add(self, counters: Any) -> None:
        for key in ("nodes_created", "nodes_deleted", "relationships_created", "relationships_deleted",
                    "properties_set", "labels_added"):
            self.counters[key] = self.counters.get(key, 0) + int(getattr(counters, key, 0) or 0)


def resolve(statement: CypherStatement | str) -> CypherStatement:
    """A catalog statement from a :class:`CypherStatement` or a ``"section/name"`` (bare name: library)."""
    if isinstance(statement, CypherStatement):
        return statement
    if not isinstance(statement, str) or not statement:
        raise InputError(f"expected a cypher statement name like 'library/NAME', got {statement!r}")
    section, _, name = statement.rpartition("/")
    return load(section or "library", name)


_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)


def _plain(value: Any) -> Any:
    """Parameter values the driver can send: numpy scalars/arrays, tuples and paths become plain Python."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if (type(value) is list and value and type(value[0]) is dict
            and all(type(row) is dict and all(type(v) in _SCALARS for v in row.values()) for row in value)):
        return value  # fast path: rows of plain scalars (the common batch) go as they are
    if type(value) is list and _SCALAR_TYPES.issuperset(map(type, value)):
        return value  # fast path: a column of plain scalars (columnar batches)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _plain(item())
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return _plain(tolist())
    return value


def _batched(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


class GraphBackend:
    """A connection to one graph database over Bolt (Neo4j or the embedded ArcadeDB).

    Use :func:`open_backend` to make one. It is a context manager; :meth:`close` releases the
    driver (the embedded server keeps running for the next command).
    """

    def __init__(
        self,
        driver: neo4j.Driver,
        *,
        backend: BackendName,
        uri: str,
        database: str | None,
        user: str | None,
        secret: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self._driver = driver
        self.backend: BackendName = backend
        self.uri = redact_uri(uri)
        self.database = database
        self.user = user
        self._secret = secret or None
        self.data_dir = data_dir
        self._closed = False

    # -- queries --------------------------------------------------------------------------

    def run(self, statement: CypherStatement | str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one catalog statement and return its rows as dicts.

        Parameters
        ----------
        statement
            A :class:`CypherStatement` or its name (``"library/NAME"``, ``"schema/NAME"``, ...).
        params
            Values for the statement's ``$parameters``; every one it uses must be given.

        Returns
        -------
        list of dict
            One dict per record, keyed by the ``RETURN`` columns.
        """
        stmt = resolve(statement)
        values = self._check_params(stmt, params or {})
        result = self._execute(stmt, values)
        return [record.data() for record in result.records]

    def write_batches(
        self,
        statement: CypherStatement | str,
        rows: Iterable[Mapping[str, Any]],
        batch_size: int = 1000,
        *,
        params: Mapping[str, Any] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> WriteSummary:
        """Write ``rows`` through an ``UNWIND $rows AS row ...`` statement, one transaction per batch.

        Each batch commits on its own and the driver retries it after a transient failure, so
        statements should ``MERGE`` on deterministic ids: a rerun after a crash is then exact.

        Parameters
        ----------
        statement
            A write statement that reads ``$rows``.
        rows
            Row dicts (any iterable; consumed lazily, ``batch_size`` at a time).
        batch_size
            Rows per transaction.
        params
            Further parameters shared by every batch.
        on_batch
            Called with the number of rows of each committed batch (progress bars).

        Returns
        -------
        WriteSummary
        """
        stmt = resolve(statement)
        if "rows" not in stmt.params:
            raise InputError(f"{stmt.section}/{stmt.name} does not read $rows; batched writes need 'UNWIND $rows AS row'")
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        shared = dict(params or {})
        summary = WriteSummary()
        for chunk in _batched(rows, batch_size):
            values = self._check_params(stmt, {**shared, "rows": chunk})
            result = self._execute(stmt, values)
            summary.rows += len(chunk)
            summary.batches += 1
            summary.add(result.summary.counters)
            if on_batch is not None:
                on_batch(len(chunk))
        return summary

    def ping(self) -> BackendInfo:
        """Round-trip to the server and describe it (backend, agent, version)."""
        self.run("admin/ping")
        try:
            server = self._driver.get_server_info()
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, "ping") from None
        agent = str(server.agent)
        protocol = ".".join(str(p) for p in server.protocol_version)
        match = _ARCADE_AGENT.search(agent)
        if match:
            version = match.group(1)
        else:
            version = agent.split("/", 1)[1] if "/" in agent else "unknown"
            rows = self._safe_components()
            for row in rows:
                if str(row.get("name", "")).lower().startswith("neo4j") and row.get("versions"):
                    version = f"{row['versions'][0]} {row.get('edition', '')}".strip()
        return BackendInfo(self.backend, self.uri, agent, version, self.database, protocol)

    def _safe_components(self) -> list[dict[str, Any]]:
        try:
            return self.run("admin/components")
        except InputError:  # a server without dbms.components(): the agent string has to do
            return []

    def close(self) -> None:
        """Close the driver (idempotent). The embedded server stays up for later commands."""
        if not self._closed:
            self._closed = True
            self._driver.close()
            if self.data_dir is not None:
                from circuitdb.graph import arcade  # noqa: PLC0415

                arcade.touch(self.data_dir)

    def __enter__(self) -> GraphBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GraphBackend(backend={self.backend!r}, uri={self.uri!r}, database={self.database!r})"

    # -- internals ------------------------------------------------------------------------

    def _check_params(self, stmt: CypherStatement, params: Mapping[str, Any]) -> dict[str, Any]:
        missing = [p for p in stmt.params if p not in params]
        if missing:
            names = ", ".join(f"${p}" for p in missing)
            raise InputError(f"{stmt.section}/{stmt.name} needs parameter(s) {names}; pass them as params")
        for key, value in params.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"parameter ${key} of {stmt.section}/{stmt.name} is {value}; pass a finite number")
        return {k: _plain(v) for k, v in params.items()}

    def _execute(self, stmt: CypherStatement, values: dict[str, Any]) -> neo4j.EagerResult:
        if self._closed:
            raise BackendUnavailable(f"the connection to {self.uri} is closed; open the backend again")
        try:
            return self._driver.execute_query(
                neo4j.Query(stmt.text),  # type: ignore[arg-type] - text comes from a shipped .cypher file
                parameters_=values,
                database_=self.database,
            )
        except Exception as exc:  # noqa: BLE001 - every driver failure becomes a one-line error
            raise self._translate(exc, f"{stmt.section}/{stmt.name}") from None

    def _scrub(self, text: str) -> str:
        line = " ".join(str(text).split())
        if self._secret:
            line = line.replace(self._secret, "***")
        return line[:240]

    def _translate(self, exc: BaseException, what: str) -> CircuitDBError:
        return translate_error(exc, uri=self.uri, user=self.user, database=self.database, what=what,
                               scrub=self._scrub, embedded_dir=self.data_dir)


_REASONS = (
    ("connection refused", "connection refused"),
    ("timed out", "connection timed out"),
    ("closed without handshake", "connection closed by the server"),
    ("failed to read", "connection lost"),
    ("defunct", "connection lost"),
    ("name or service not known", "unknown host"),
    ("no address associated", "unknown host"),
    ("temporary failure in name resolution", "unknown host"),
)


def _short_reason(message: str) -> str:
    """A few words for a driver's long connection error (the full text is in CIRCUITDB_DEBUG tracebacks)."""
    low = message.lower()
    for needle, reason in _REASONS:
        if needle in low:
            return reason
    return message[:160]


def _fix_unreachable(embedded_dir: Path | None) -> str:
    if embedded_dir is not None:
        return f"rerun to restart the embedded server (log: {embedded_dir / 'server.log'})"
    return "start the server (e.g. circuitdb db up --local) or point --neo4j-uri / NEO4J_URI at a running one"


def translate_error(
    exc: BaseException,
    *,
    uri: str,
    user: str | None,
    database: str | None,
    what: str,
    scrub: Callable[[str], str],
    embedded_dir: Path | None = None,
) -> CircuitDBError:
    """Map a driver exception to a one-line circuitdb error (never containing the password)."""
    if isinstance(exc, CircuitDBError):
        return exc
    message = scrub(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
    code = getattr(exc, "code", None) or ""
    if (isinstance(exc, neo4j_exc.AuthError) or code.startswith("Neo.ClientError.Security")) and embedded_dir:
        return BackendUnavailable(
            f"the embedded graph server at {uri} refused its stored credentials ({message}); stop it "
            f"(circuitdb db down --embedded, or kill the pid in {embedded_dir / 'server.json'}) and rerun"
        )
    if isinstance(exc, neo4j_exc.AuthError) or code.startswith("Neo.ClientError.Security"):
        return BackendUnavailable(
            f"authentication failed at {uri} for user {user!r} ({message}); "
            "set NEO4J_USERNAME / NEO4J_PASSWORD to the server's credentials"
        )
    if code == "Neo.ClientError.Database.DatabaseNotFound":
        return InputError(
            f"database {database!r} does not exist at {uri}; set NEO4J_DATABASE to an existing database or unset it"
        )
    if isinstance(exc, (neo4j_exc.ServiceUnavailable, neo4j_exc.SessionExpired, neo4j_exc.TransientError,
                        neo4j_exc.ConnectionAcquisitionTimeoutError, neo4j_exc.IncompleteCommit, OSError)):
        return BackendUnavailable(f"graph backend at {uri} is unavailable during {what} ({_short_reason(message)}); "
                                  f"{_fix_unreachable(embedded_dir)}")
    if isinstance(exc, neo4j_exc.ConfigurationError):
        return InputError(f"bad connection settings for {uri}: {message}; check --neo4j-uri and NEO4J_* variables")
    if isinstance(exc, neo4j_exc.Neo4jError):
        return InputError(f"{what} failed at {uri}: {message}; check the query's parameters")
    if isinstance(exc, neo4j_exc.DriverError):
        return BackendUnavailable(f"graph backend at {uri} failed during {what} ({type(exc).__name__}: {message}); "
                                  f"{_fix_unreachable(embedded_dir)}")
    raise exc


def open_backend(settings: Settings | None = None, *, verify: bool = True) -> GraphBackend:
    """Connect to the configured graph: Neo4j at ``settings.neo4j_uri``, else the embedded ArcadeDB.

    The embedded server is started on demand (a child process, reused by later commands).

    Parameters
    ----------
    settings
        Connection settings (default: :meth:`Settings.from_env`).
    verify
        Round-trip once now, so an unreachable server or wrong password fails here.

    Returns
    -------
    GraphBackend

    Raises
    ------
    BackendUnavailable
        Server unreachable, credentials refused, or the embedded server failed to start.
    """
    settings = settings or Settings.from_env()
    config = {
        "connection_timeout": settings.connect_timeout_s,
        "max_transaction_retry_time": settings.retry_s,
        "connection_acquisition_timeout": max(settings.connect_timeout_s * 2, 10.0),
        "user_agent": f"circuitdb/{__version__}",
        # Server notifications (e.g. "label does not exist") would reach stderr through the driver's
        # logger and break one-line output; queries are checked by tests instead.
        "notifications_min_severity": "OFF",
    }
    if settings.neo4j_uri:
        uri, user, secret = settings.neo4j_uri, settings.neo4j_username, settings.neo4j_password
        auth = neo4j.basic_auth(user, secret) if secret is not None else None
        backend_name: BackendName = "neo4j"
        database, data_dir = settings.neo4j_database, None
    else:
        from circuitdb.graph import arcade  # noqa: PLC0415

        state = arcade.ensure_server(settings.embedded_dir, heap=settings.embedded_heap, idle_s=settings.embedded_idle_s)
        uri, user, secret = state.uri, state.user, state.password
        auth = neo4j.basic_auth(user, secret)
        backend_name, database, data_dir = "arcadedb", state.database, state.data_dir
    shown = redact_uri(uri)
    try:
        driver = neo4j.GraphDatabase.driver(uri, auth=auth, **config)
    except Exception as exc:  # noqa: BLE001 - bad URI etc.
        raise translate_error(exc, uri=shown, user=user, database=database, what="connect",
                              scrub=lambda t: " ".join(str(t).split()).replace(secret or "\0", "***")[:240],
                              embedded_dir=data_dir) from None
    backend = GraphBackend(driver, backend=backend_name, uri=uri, database=database, user=user, secret=secret,
                           data_dir=data_dir)
    if verify:
        try:
            try:
                driver.verify_connectivity()  # fails fast (no retries) when unreachable or refused
            except Exception as exc:  # noqa: BLE001 - translated
                raise backend._translate(exc, "connect") from None
            backend.run("admin/ping")  # checks the database too
        except BaseException:
            backend.close()
            raise
    return backend
