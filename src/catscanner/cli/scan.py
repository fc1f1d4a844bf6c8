"""``catscan scan`` and ``catscan serve``: the commands that use the shipped models."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..batch.sources import suffix_list, walk_folder
from ..errors import CatScannerError
from ..runtime.breeds import DEFAULT_BREED_THRESHOLD
from ..runtime.schema import ScanResult
from .common import PrecisionOption, RuntimeOption, console, err_console, fail, runtime_choice, writable_folder

MAX_THREADS = 256

ModelsOption = Annotated[Optional[Path], typer.Option(help="Folder with detector.onnx and breeds.onnx.")]
ThreadsOption = Annotated[Optional[int], typer.Option(help="CPU threads for inference (default: all cores).",
                                                      min=1, max=MAX_THREADS)]
def expand_paths(paths: list[Path]) -> tuple[list[Path], list[ScanResult], list[str]]:
    """(photo files, failures, warnings): files as given; folders walked recursively for image files
    (sorted); a photo named twice (also through its folder) once, where first named, as ``catscan
    batch`` does. A folder that cannot be listed, or a photo name that is not a regular file, is a
    failure, not silently skipped."""
    files: list[Path] = []
    failures: list[ScanResult] = []
    warnings: list[str] = []
    for p in paths:
        if str(p) == "-":
            fail("catscan scan does not read a photo from standard input: save it to a file and give its path.")
        if p.is_dir():
            listing = walk_folder(str(p))
            files += [Path(path) for path, _ in listing.files]
            failures += [ScanResult.failed(path, "io_error", message) for path, message in listing.problems]
            warnings += listing.warnings
        else:
            files.append(p)  # unreadable or missing files are reported by the scan itself
    seen: set[str] = set()

    def first_time(path) -> bool:
        key = os.path.abspath(path)
        return key not in seen and not seen.add(key)
    failures = [f for f in failures if first_time(f.path)]
    return [f for f in files if first_time(f)], failures, warnings


def display_names(files: list[Path]) -> dict[str, str]:
    """Short, readable names for the table: each path relative to the photos' common folder
    (just the file name for a single photo). Keyed by ``str(path)``, as in ``ScanResult.path``."""
    if not files:
        return {}
    absolute = [os.path.abspath(f) for f in files]
    try:
        common = os.path.commonpath([os.path.dirname(a) for a in absolute])
    except ValueError:  # e.g. photos on different drives (Windows)
        return {str(f): str(f) for f in files}
    return {str(f): os.path.relpath(a, common) for f, a in zip(files, absolute)}


MAX_NAME_BYTES = 255  # the longest file name most file systems take (ext4, APFS, NTFS in UTF-16 units)
DRAWING_MARK = b"Cat Scanner drawing"  # the JPEG comment of every drawing: only these are overwritten


def annotated_names(names: Iterable[str]) -> dict[str, str]:
    """A distinct ``.jpg`` file name for each photo's drawing, which tells which photo it shows:
    ``sub/pet.jpg`` -> ``sub__pet.jpg``, ``sub/pet.png`` -> ``sub__pet.png.jpg``, with ``-2``, ``-3`` ...
    added when two photos would still get the same name (``pet.jpg`` and ``pet.JPG``). A name too long
    for the file system keeps its start and end around a hash of the whole."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        flat = Path(name).as_posix().replace("/", "__")
        stem = flat[:-len(Path(flat).suffix)] if Path(flat).suffix.lower() in (".jpg", ".jpeg") else flat
        candidate, n = _short_enough(f"{stem}.jpg"), 1
        while candidate.lower() in taken:
            n += 1
            candidate = _short_enough(f"{stem}-{n}.jpg")
        taken.add(candidate.lower())
        out[name] = candidate
    return out


def _short_enough(name: str) -> str:
    """``name`` itself when the file system takes it, else its first and last characters around a
    hash of the whole (``long…name~1a2b3c4d.jpg``), within ``MAX_NAME_BYTES`` bytes of UTF-8."""
    if len(name.encode("utf-8", "surrogateescape")) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    body, keep = name[:-len(".jpg")], 100  # 100 characters each side: under 255 bytes unless mostly non-ASCII
    while keep and len(f"{body[:keep]}~{body[-keep:]}~{digest}.jpg".encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        keep -= 10
    return f"{body[:keep]}~{body[-keep:]}~{digest}.jpg" if keep else f"{digest}.jpg"


def _foreign_file(path: Path) -> bool:
    """True when something other than a marked drawing stands at ``path``: never overwritten. Only a
    regular file is opened (a named pipe there would block), and only its header is read."""
    from PIL import Image

    if not os.path.lexists(path):
        return False
    if not path.is_file():
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.info.get("comment") != DRAWING_MARK
    except (OSError, ValueError, Image.DecompressionBombError):
        return True


def _save_annotated(scanner, results: Iterable[ScanResult], folder: Path, names: dict[str, str],
                    problems: list[str]) -> Iterator[ScanResult]:
    """Pass results through, saving each scanned photo, full size, with its cats drawn on it; a
    drawing that cannot be made or written, or whose name is taken by a file that is not an earlier
    drawing, is noted in ``problems`` and the scan goes on."""
    from ..runtime.annotate import annotate

    files = annotated_names(names[r] for r in names)
    for r in results:
        if r.ok:
            name = names.get(r.path, r.path)
            out = folder / files[name]
            try:
                if _foreign_file(out):
                    problems.append(f"{name}: its drawing was not saved: {out} is already there and is not marked "
                                    "as a Cat Scanner drawing (drawings made before December 2026 carry no mark), so it "
                                    "was left as it is. Choose an empty --annotate folder, or delete it.")
                else:
                    annotate(scanner.load(r.path, full_size=True), r).save(out, quality=90, comment=DRAWING_MARK)
            except (OSError, CatScannerError) as e:  # e.g. no space left, or the photo gone since its scan
                problems.append(f"{name}: its drawing was not saved to {out}: {getattr(e, 'strerror', None) or e}")
        yield r


def _check_annotate_folder(folder: Path, paths: list[Path], files: list[Path], names: dict[str, str]) -> None:
    """``--annotate`` must not write into a folder being scanned (at any depth: the next run would scan
    the drawings as photos) nor onto a photo being scanned (it would replace the photo)."""
    where = os.path.realpath(folder)
    scanned = next((p for p in paths if p.is_dir() and
                    os.path.commonpath([where, os.path.realpath(p)]) == os.path.realpath(p)), None)
    if scanned is not None:
        fail(f"--annotate {folder} lies in {scanned}, which is being scanned: the drawings would be scanned "
             "as photos next time. Choose a folder outside the photos.")
    targets = {os.path.join(where, name) for name in annotated_names(names[str(f)] for f in files).values()}
    clash = next((f for f in files if os.path.realpath(f) in targets), None)
    if clash is not None:
        fail(f"--annotate {folder} would overwrite {clash}, a photo being scanned, with its drawing. "
             "Choose a folder outside the photos.")


def _breed_text(breeds) -> str:
    return ", ".join(f"{b.breed} {b.percent:.0f} %" for b in breeds) if breeds else "—"


def _cats_text(r: ScanResult) -> str:
    """One line per cat: its top breed and box."""
    if r.wild_cat:
        return f"[yellow]a wild cat ({r.wild_cat})[/yellow], not a house cat"
    lines = []
    for i, cat in enumerate(r.cats, 1):
        b = cat.box
        top = f"{cat.breeds[0].breed} {cat.breeds[0].percent:.0f} %" if cat.breeds else "breed unknown"
        lines.append(f"{i}. {top} at {b.left},{b.top},{b.right},{b.bottom}")
    return "\n".join(lines) or "—"


def scan(
    paths: Annotated[list[Path], typer.Argument(help="Photos and/or folders (searched recursively).")],
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
    threshold: Annotated[float, typer.Option(help="Smallest breed share to list, 0-1.", min=0.0, max=1.0)] = DEFAULT_BREED_THRESHOLD,
    models: ModelsOption = None,
    threads: ThreadsOption = None,
    batch_size: Annotated[int, typer.Option(help="Photos per inference batch.", min=1, max=256)] = 8,
    annotate: Annotated[Optional[Path], typer.Option(help="Also save each photo, full size, with every cat's box and breeds drawn on it, into this folder.")] = None,
    runtime: RuntimeOption = None,
    precision: PrecisionOption = None,
) -> None:
    """Scan photos: is there a cat, where is each one, and what breed mix is it?

    Exit code 0 when every photo was scanned (and, with --annotate, drawn), 1 when any photo failed
    (or its drawing could not be saved), 2 for usage errors.
    """
    from ..progress import progress_bar
    from ..runtime.scanner import Scanner

    runtime, precision = runtime_choice(runtime, precision)
    files, failures, warnings = expand_paths(paths)
    for w in warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    if not files and not failures:
        fail(f"no photos found in the paths given (folders are searched for files ending in {suffix_list()}).")
    names = display_names([*files, *(Path(f.path) for f in failures)])
    if annotate:
        _check_annotate_folder(annotate, paths, files, names)
        writable_folder(annotate, "--annotate")
    try:
        scanner = Scanner(models, threads=threads, runtime=runtime, precision=precision)
    except CatScannerError as e:
        fail(str(e))
    # The bar goes to stderr. With --json on a terminal the JSON lines are the progress;
    # with --json piped (or a table, printed at the end) stdout stays clean either way.
    show_bar = len(files) > 1 and err_console.is_terminal and not (json_lines and console.is_terminal)
    results: Iterable[ScanResult] = progress_bar(scanner.scan_many(files, threshold=threshold, batch_size=batch_size),
                                                 desc="scanning", total=len(files), enabled=show_bar, transient=True)
    drawing_problems: list[str] = []
    if annotate:
        results = _save_annotated(scanner, results, annotate, names, drawing_problems)
    failed = 0
    if json_lines:
        for r in [*failures, *results]:
            failed += not r.ok
            print(json.dumps(r.to_dict()), flush=True)
        _report_drawing_problems(drawing_problems)
        raise typer.Exit(1 if failed or drawing_problems else 0)

    table = Table(title="Cat Scanner")
    # "fold" wraps a long name or message onto the next line instead of cutting it with "…".
    table.add_column("photo", overflow="fold")
    table.add_column("cats")
    table.add_column("p(cat)")
    table.add_column("breed mix (most confident cat)", overflow="fold")
    table.add_column("each cat: top breed at l,t,r,b", overflow="fold")
    for r in [*failures, *results]:
        name = escape(names.get(r.path, r.path))  # file names and messages are text, not rich markup
        if not r.ok:
            failed += 1
            table.add_row(name, "[red]error[/red]", "", escape(r.error), "")
        else:
            verdict = f"[green]{len(r.cats)}[/green]" if r.is_cat else ("wild cat" if r.wild_cat else "no cat")
            table.add_row(name, verdict, f"{r.cat_probability:.1%}", _breed_text(r.breeds), _cats_text(r))
    console.print(table)
    if failed:
        err_console.print(f"[red]{failed} of {len(files) + len(failures)} photos could not be scanned.[/red]")
    _report_drawing_problems(drawing_problems)
    raise typer.Exit(1 if failed or drawing_problems else 0)


def _report_drawing_problems(problems: list[str]) -> None:
    for p in problems:
        err_console.print(f"[red]error:[/red] {escape(p)}", highlight=False)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every network interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[Optional[int], typer.Option(help="Inference threads (default: one per CPU core; env CATSCAN_THREADS).", min=1, max=MAX_THREADS)] = None,
    models: Annotated[Optional[Path], typer.Option(
        help="Folder with detector.onnx and breeds.onnx (default: env CATSCAN_MODEL_DIR, else the shipped models).")] = None,
    max_upload_mb: Annotated[Optional[float], typer.Option(help="Largest photo accepted, in MiB (default 10; env CATSCAN_MAX_UPLOAD_BYTES).", min=0.01)] = None,
    max_queue: Annotated[Optional[int], typer.Option(help="Photos that may wait for a free thread before the server answers 503 (busy); default 16; env CATSCAN_MAX_QUEUE.", min=0)] = None,
    runtime: RuntimeOption = None,
    precision: PrecisionOption = None,
) -> None:
    """Run the web app: the page at http://HOST:PORT/, the JSON API at /api/v1/scan, docs at /docs."""
    import logging

    import uvicorn

    from ..runtime.contract import ModelFiles
    from ..web import Settings, create_app

    runtime_choice(runtime, precision)  # a usage error now rather than a failed load in the server

    if models is not None:
        try:
            ModelFiles.resolve(models)
        except CatScannerError as e:
            fail(str(e))
    try:
        settings = Settings.from_env(
            model_dir=str(models) if models else None, threads=workers, max_queue=max_queue,
            max_upload_bytes=None if max_upload_mb is None else int(max_upload_mb * 1024 * 1024),
            runtime=runtime, precision=precision,
        )
    except ValueError as e:  # a CATSCAN_* variable that is not a number
        fail(str(e))
    web_app = create_app(settings)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    logging.getLogger("catscanner").addHandler(handler)
    logging.getLogger("catscanner").setLevel(logging.INFO)
    # the upload parser's notes on malformed bodies (the client gets its 400): in the same format, not bare lines
    logging.getLogger("python_multipart").addHandler(handler)
    logging.getLogger("python_multipart").propagate = False
    err_console.print(f"Cat Scanner on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(web_app, host=host, port=port, log_level="info")
