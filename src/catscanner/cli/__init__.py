"""The ``catscan`` command line: scan photos and serve them (:mod:`.scan`); train, fit, export,
evaluate and benchmark the models (:mod:`.develop`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from . import batch, develop, scan

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cat Scanner: is there a cat in the photo, where, and which breeds?")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"catscan {version('catscanner')}")
        except PackageNotFoundError:  # a source tree that was never installed
            typer.echo("catscan (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                           help="Print the version and exit.")] = False,
) -> None:
    """Cat Scanner: is there a cat in the photo, where, and which breeds?"""
    # A terminal that cannot show a character (PYTHONIOENCODING=latin-1 and the table's "—") gets
    # a "?" instead of a traceback; the JSON output is ASCII anyway.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


app.command()(scan.scan)
app.command()(scan.serve)
app.command()(batch.batch)
app.command("train")(develop.train_command())
app.command("cross-validate")(develop.cross_validate_command())
app.command("export-breeds")(develop.export_breeds)
app.command("fit-detector")(develop.fit_detector)
app.command("check-weights")(develop.check_weights)
app.command()(develop.evaluate)
app.command("evaluate-detector")(develop.evaluate_detector)
app.command()(develop.bench)
