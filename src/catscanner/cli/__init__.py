"""The ``catscan`` command line: scan photos and serve them (:mod:`.scan`); train, fit, export,
evaluate and benchmark the models (:mod:`.develop`)."""

from __future__ import annotations

import typer

from . import batch, develop, scan

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cat Scanner: is there a cat in the photo, where, and which breeds?")


@app.callback()
def _root() -> None:
    """Cat Scanner: is there a cat in the photo, where, and which breeds?"""


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
