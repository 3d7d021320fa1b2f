"""Connection settings for the graph backend, from options and environment.

Two backends speak Bolt to the same driver:

* **Neo4j** at a URI, chosen when ``--neo4j-uri`` / ``NEO4J_URI`` is set, with
  ``NEO4J_USERNAME`` (default ``neo4j``), ``NEO4J_PASSWORD`` and ``NEO4J_DATABASE``;
* the **embedded default** otherwise: an ArcadeDB server that circuitdb starts
  as a child process, with its data under :attr:`Settings.embedded_dir`.

The embedded data directory is, in order of precedence: an explicit option,
``$CIRCUITDB_EMBEDDED_DIR``, ``$CIRCUITDB_HOME/embedded``,
``$XDG_DATA_HOME/circuitdb/embedded``, ``~/.local/share/circuitdb/embedded``.

The password never appears in ``repr``/``str`` or :meth:`Settings.redacted`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from circuitdb.errors import InputError

#: Environment variables read by :meth:`Settings.from_env`.
ENV_URI = "NEO4J_URI"
ENV_USERNAME = "NEO4J_USERNAME"
ENV_PASSWORD = "NEO4J_PASSWORD"
ENV_DATABASE = "NEO4J_DATABASE"
ENV_HOME = "CIRCUITDB_HOME"
ENV_EMBEDDED_DIR = "CIRCUITDB_EMBEDDED_DIR"
ENV_EMBEDDED_HEAP = "CIRCUITDB_EMBEDDED_HEAP"
ENV_EMBEDDED_IDLE = "CIRCUITDB_EMBEDDED_IDLE_S"

_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")

BackendKind = Literal["neo4j", "embedded"]


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """The user data directory of circuitdb (``$CIRCUITDB_HOME`` or the XDG default)."""
    env = os.environ if env is None else env
    if env.get(ENV_HOME):
        return Path(env[ENV_HOME]).expanduser()
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "circuitdb"


def default_embedded_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the embedded ArcadeDB keeps its data unless told otherwise."""
    env = os.environ if env is None else env
    if env.get(ENV_EMBEDDED_DIR):
        return Path(env[ENV_EMBEDDED_DIR]).expanduser()
    return default_home(env) / "embedded"


@dataclass(frozen=True, repr=False)
class Settings:
    """Where the graph lives and how to reach it.

    Attributes
    ----------
    neo4j_uri
        Bolt URI of a Neo4j server; ``None`` selects the embedded default.
    neo4j_username, neo4j_password
        Credentials for the Neo4j server. ``neo4j_password=None`` connects without auth.
    neo4j_database
        Database name on the Neo4j server; ``None`` uses the server default.
    embedded_dir
        Data directory of the embedded ArcadeDB server (its state, credentials and databases).
    embedded_heap
        Java heap of the embedded server (``-Xmx``), e.g. ``"1g"``.
    embedded_idle_s
        The embedded server stops itself after this many seconds without a client; 0 = never.
    connect_timeout_s
        How long one connection attempt may take before the backend counts as unreachable.
    retry_s
        How long the driver retries a transaction after a transient failure or lost connection.
    """

    neo4j_uri: str | None = None
    neo4j_username: str = "neo4j"
    neo4j_password: str | None = field(default=None, repr=False)
    neo4j_database: str | None = None
    embedded_dir: Path = field(default_factory=default_embedded_dir)
    embedded_heap: str = "1g"
    embedded_idle_s: float = 1800.0
    connect_timeout_s: float = 5.0
    retry_s: float = 5.0

    def __post_init__(self) -> None:
        if self.neo4j_uri is not None:
            uri = self.neo4j_uri.strip()
            if not uri:
                object.__setattr__(self, "neo4j_uri", None)
            else:
                scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
                if scheme not in _SCHEMES:
                    raise InputError(
                        f"bad Neo4j URI {redact_uri(uri)!r}: use one of {', '.join(s + '://' for s in _SCHEMES)}"
                        " e.g. bolt://localhost:7687"
                    )
                object.__setattr__(self, "neo4j_uri", uri)
        object.__setattr__(self, "embedded_dir", Path(self.embedded_dir).expanduser())
        if self.embedded_idle_s < 0:
            raise InputError(f"embedded idle timeout must be >= 0 seconds, got {self.embedded_idle_s}")
        if self.connect_timeout_s <= 0 or self.retry_s < 0:
            raise InputError("connect timeout must be > 0 and retry time >= 0 seconds")

    @property
    def backend(self) -> BackendKind:
        """``"neo4j"`` when a URI is configured, else ``"embedded"``."""
        return "neo4j" if self.neo4j_uri else "embedded"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from environment variables; keyword overrides (CLI options) win when not ``None``.

        Parameters
        ----------
        env
            Environment to read (default ``os.environ``).
        **overrides
            Field values, e.g. ``neo4j_uri=ctx.obj["neo4j_uri"]``; ``None`` means "not given".

        Returns
        -------
        Settings
        """
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {
            "neo4j_uri": env.get(ENV_URI) or None,
            "neo4j_username": env.get(ENV_USERNAME) or "neo4j",
            "neo4j_password": env.get(ENV_PASSWORD),
            "neo4j_database": env.get(ENV_DATABASE) or None,
            "embedded_dir": default_embedded_dir(env),
        }
        if env.get(ENV_EMBEDDED_HEAP):
            values["embedded_heap"] = env[ENV_EMBEDDED_HEAP]
        if env.get(ENV_EMBEDDED_IDLE):
            try:
                values["embedded_idle_s"] = float(env[ENV_EMBEDDED_IDLE])
            except ValueError:
                raise InputError(
                    f"{ENV_EMBEDDED_IDLE}={env[ENV_EMBEDDED_IDLE]!r} is not a number of seconds; set e.g. 1800 or 0 (never)"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict that is safe to print or log (no password)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "neo4j_password":
                value = None if value is None else "***"
            elif f.name == "neo4j_uri" and value is not None:
                value = redact_uri(value)
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.redacted().items()) + ")"

    __str__ = __repr__


def redact_uri(uri: str) -> str:
    """Drop any ``user:password@`` part from a URI so it can be shown."""
    if "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    netloc, sep, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return f"{scheme}://{netloc}{sep}{tail}"
