"""What every ``catscan`` command shares: the consoles and how a command fails."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error on stderr and exit (2: a usage error). The message is plain
    text: paths and hints such as ``catscanner[openvino]`` are printed as they are, never as markup."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)
