"""The ``circuitdb`` command line: one root group, lazily loaded subcommands.

Subcommands live one module per group in :mod:`circuitdb.cli`; they are imported
only when invoked so ``circuitdb --help`` stays fast (no torch import).
Errors leave through :func:`circuitdb.cli.console.abort`; exit codes are
1 usage, 2 input/config, 3 backend unavailable.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from circuitdb import __version__
from circuitdb.cli.console import (
    abort,
    console,
    debug_enabled,
    set_hide_progress,
    set_verbosity,
)
from circuitdb.errors import CircuitDBError

#: command name -> "module:attribute". Keep sorted; one line per command.
COMMANDS: dict[str, str] = {
    "attribute": "circuitdb.cli.attribute:attribute_cmd",
    "circuits": "circuitdb.cli.circuits:circuits",
    "datasets": "circuitdb.cli.datasets:datasets",
    "db": "circuitdb.cli.db:db",
    "demo": "circuitdb.cli.demo:demo",
    "demo-model": "circuitdb.cli.demo_model:demo_model",
    "diff": "circuitdb.cli.diff:diff",
    "eval-transcoders": "circuitdb.cli.transcoders:eval_cmd",
    "export": "circuitdb.cli.export:export",
    "grn": "circuitdb.cli.grn:grn",
    "harvest": "circuitdb.cli.transcoders:harvest_cmd",
    "interpret": "circuitdb.cli.interpret:interpret",
    "predict": "circuitdb.cli.predict:predict",
    "queries": "circuitdb.cli.query:queries",
    "query": "circuitdb.cli.query:query",
    "sentences": "circuitdb.cli.sentences:sentences",
    "subgraph": "circuitdb.cli.subgraph:subgraph",
    "train-transcoders": "circuitdb.cli.transcoders:train_cmd",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module_name, attr = self._lazy[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "CIRCUITDB"})
@click.option("-v", "--verbose", count=True, help="More detail (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and results.")
@click.option("--hide-progress", is_flag=True, help="No progress bars.")
@click.option("--neo4j-uri", envvar="NEO4J_URI", default=None, metavar="URI",
              help="Neo4j Bolt URI (env NEO4J_URI). Without one, the embedded ArcadeDB default is used.")
@click.option("--embedded-dir", envvar="CIRCUITDB_EMBEDDED_DIR", default=None, metavar="DIR",
              type=click.Path(file_okay=False), help="Data directory of the embedded graph (env CIRCUITDB_EMBEDDED_DIR; "
              "default $CIRCUITDB_HOME/embedded or ~/.local/share/circuitdb/embedded).")
@click.version_option(__version__, prog_name="circuitdb")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, hide_progress: bool, neo4j_uri: str | None,
        embedded_dir: str | None) -> None:
    """circuitdb: trace single-cell foundation models (cell2sentence) through
    transcoders and query their circuits as a graph."""
    set_verbosity(-1 if quiet else verbose)
    set_hide_progress(hide_progress)
    ctx.ensure_object(dict)
    ctx.obj["neo4j_uri"] = neo4j_uri
    ctx.obj["embedded_dir"] = embedded_dir


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: the one place exceptions become exit codes."""
    if not debug_enabled():
        # The driver logs each retried transaction as a warning (e.g. a deadlock between the export's
        # concurrent writers, which it retries); a retry is routine, and real failures still raise.
        logging.getLogger("neo4j").setLevel(logging.ERROR)
    try:
        # standalone_mode=False hands us every error; ctx.exit(n) comes back as n.
        rv = cli.main(args=argv, prog_name="circuitdb", standalone_mode=False)
    except click.exceptions.Abort:
        abort("interrupted", 130)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        abort(f"{exc.format_message()}{hint}", 1)
    except click.ClickException as exc:
        abort(exc.format_message(), 2)
    except CircuitDBError as exc:
        if debug_enabled():
            console.print_exception()
        abort(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        abort("interrupted", 130)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the one catch-all, by design
        if debug_enabled():
            console.print_exception(show_locals=False)
            raise SystemExit(70) from None
        abort(f"unexpected {type(exc).__name__}: {exc} (rerun with CIRCUITDB_DEBUG=1 for the traceback)", 70)
    raise SystemExit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
