"""What every ``catscan`` command shares: the consoles, how a command fails, the runtime options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import CatScannerError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error on stderr and exit (2: a usage error). The message is plain
    text: paths and hints such as ``catscanner[openvino]`` are printed as they are, never as markup."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def writable_folder(folder: Path, what: str) -> None:
    """``folder`` made (with its parents) and writable now, before the work that writes there; else a
    usage error naming ``what`` (the option it came from)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{what}: could not create {folder}: {e.strerror or e}. Choose a folder you can write to.")
    if not os.access(folder, os.W_OK):
        fail(f"{what}: {folder} is not writable: choose a folder you can write to.")


RuntimeOption = Annotated[Optional[str], typer.Option(
    help="Inference runtime: auto (OpenVINO where installed and the CPU has native bf16, else ONNX Runtime), "
         "openvino or onnxruntime "
         "(default: env CATSCAN_RUNTIME, else auto).")]
PrecisionOption = Annotated[Optional[str], typer.Option(
    help="Inference precision: auto (bf16 where the CPU and runtime compute it natively, else f32), f32 or bf16 "
         "(default: env CATSCAN_PRECISION, else auto).")]


def runtime_choice(runtime: str | None, precision: str | None) -> tuple[str, str]:
    """``--runtime`` / ``--precision`` checked (usage error, exit 2, if unknown or not installed)."""
    from ..runtime.engine import AUTO, choose_precision, choose_runtime

    try:
        chosen = choose_runtime(runtime)
        choose_precision(chosen, precision)
    except CatScannerError as e:
        fail(str(e))
    return runtime or AUTO, precision or AUTO
