"""The one rich Console (stderr) and the one abort path of the CLI."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Messages, progress and tables go to stderr; stdout is kept for data (``--json``).
console = Console(stderr=True, highlight=False)

_state = {"verbosity": 0, "hide_progress": False}


def set_verbosity(level: int) -> None:
    _state["verbosity"] = level


def verbosity() -> int:
    return int(_state["verbosity"])


def set_hide_progress(hide: bool) -> None:
    _state["hide_progress"] = hide


def debug_enabled() -> bool:
    return os.environ.get("CIRCUITDB_DEBUG", "") not in ("", "0", "false", "False")


def info(message: str) -> None:
    if verbosity() >= 0:
        console.print(message)


def detail(message: str) -> None:
    if verbosity() >= 1:
        console.print(f"[dim]{message}[/dim]")


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


def emit_json(data: Any) -> None:
    """Write machine-readable results to stdout (never mixed with messages)."""
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def abort(text: str, code: int = 2) -> NoReturn:
    """The single exit path for errors: one line on stderr, then exit ``code``."""
    from rich.markup import escape

    first_line = " ".join(str(text).split())
    # escape: messages quote user values and lists ("found [a, b]") that rich would read as markup
    console.print(f"[bold red]error:[/bold red] {escape(first_line)}", soft_wrap=True)
    raise SystemExit(code)


class _StatusColumn(TextColumn):
    """Shows ``task.fields["status"]`` (live loss, L0, ...) when a task sets it."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[no-untyped-def]
        from rich.text import Text

        return Text(str(task.fields.get("status", "")))


def progress(*, transient: bool = True) -> Progress:
    """A progress bar on the shared console; hidden with ``--hide-progress`` or ``-q``."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        _StatusColumn(),
        console=console,
        transient=transient,
        disable=bool(_state["hide_progress"]) or verbosity() < 0,
    )
