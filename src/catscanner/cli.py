"""The ``catscan`` command line: scan photos, train, evaluate, export, serve, benchmark."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .breeds import DEFAULT_BREED_THRESHOLD
from .errors import CatScannerError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cat Scanner: is there a cat in the photo, where, and which breeds?")
console = Console()
err_console = Console(stderr=True)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


@app.callback()
def _root() -> None:
    """Cat Scanner: is there a cat in the photo, where, and which breeds?"""


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given; folders walked recursively for image files (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def _breed_text(result) -> str:
    if result.breeds:
        return ", ".join(f"{b.breed} {b.percent:.0f} %" for b in result.breeds)
    return "—"


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Photos and/or folders (searched recursively).")],
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
    threshold: Annotated[float, typer.Option(help="Smallest breed share to list, 0-1.", min=0.0, max=1.0)] = DEFAULT_BREED_THRESHOLD,
    models: Annotated[Optional[Path], typer.Option(help="Folder with detector.onnx and breeds.onnx.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for inference (default: all cores).")] = None,
    batch_size: Annotated[int, typer.Option(help="Photos per inference batch.", min=1)] = 16,
) -> None:
    """Scan photos: is there a cat, where is it, and what breed mix is it?

    Exit code 0 when every photo was scanned, 1 when any photo failed, 2 for usage errors.
    """
    from .progress import progress_bar
    from .scanner import Scanner

    files = expand_paths(paths)
    if not files:
        _fail("no photos found in the paths given.")
    try:
        scanner = Scanner(models, threads=threads)
    except CatScannerError as e:
        _fail(str(e))
    show_bar = len(files) > 1 and sys.stderr.isatty()
    results = scanner.scan_many(progress_bar(files, desc="scanning", enabled=show_bar),
                                threshold=threshold, batch_size=batch_size)
    failed = 0
    table = Table(title=None if json_lines else "Cat Scanner")
    for col in ("photo", "cat?", "p(cat)", "breed mix", "where (l,t,r,b)"):
        table.add_column(col)
    for r in results:
        failed += not r.ok
        if json_lines:
            print(json.dumps(r.to_dict()), flush=True)
        elif not r.ok:
            table.add_row(r.path, "[red]error[/red]", "", r.error.message, "")
        else:
            box = r.box
            table.add_row(
                r.path, "[green]cat[/green]" if r.is_cat else "no cat", f"{r.cat_probability:.1%}",
                _breed_text(r), f"{box.left},{box.top},{box.right},{box.bottom}" if box else "",
            )
    if not json_lines:
        console.print(table)
        if failed:
            err_console.print(f"[red]{failed} of {len(files)} photos could not be scanned.[/red]")
    raise typer.Exit(1 if failed else 0)
