"""The ``catscan`` command line: scan photos, train, evaluate, export, serve, benchmark."""

from __future__ import annotations

import json
import os
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


def display_names(files: list[Path]) -> dict[str, str]:
    """Short, readable names for the table: each path relative to the photos' common folder
    (just the file name for a single photo). Keyed by ``str(path)``, as in ``ScanResult.path``."""
    absolute = [os.path.abspath(f) for f in files]
    try:
        common = os.path.commonpath([os.path.dirname(a) for a in absolute])
    except ValueError:  # e.g. photos on different drives (Windows)
        return {str(f): str(f) for f in files}
    return {str(f): os.path.relpath(a, common) for f, a in zip(files, absolute)}


def _breed_text(result) -> str:
    if result.breeds:
        return ", ".join(f"{b.breed} {b.percent:.0f} %" for b in result.breeds)
    return "—"


def _save_annotated(scanner, results, folder: Path, names: dict[str, str]):
    """Pass results through, saving each scanned photo with the result drawn on it."""
    from .annotate import annotate

    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r.ok:
            out = folder / (Path(names.get(r.path, r.path)).with_suffix("").as_posix().replace("/", "__") + ".jpg")
            annotate(scanner.load(r.path), r).save(out, quality=90)
        yield r


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Photos and/or folders (searched recursively).")],
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
    threshold: Annotated[float, typer.Option(help="Smallest breed share to list, 0-1.", min=0.0, max=1.0)] = DEFAULT_BREED_THRESHOLD,
    models: Annotated[Optional[Path], typer.Option(help="Folder with detector.onnx and breeds.onnx.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for inference (default: all cores).")] = None,
    batch_size: Annotated[int, typer.Option(help="Photos per inference batch.", min=1)] = 8,
    annotate: Annotated[Optional[Path], typer.Option(help="Also save each photo with its box, verdict and breeds drawn on it, into this folder.")] = None,
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
    # The bar goes to stderr. With --json on a terminal the JSON lines are the progress;
    # with --json piped (or a table, printed at the end) stdout stays clean either way.
    show_bar = len(files) > 1 and err_console.is_terminal and not (json_lines and console.is_terminal)
    results = progress_bar(scanner.scan_many(files, threshold=threshold, batch_size=batch_size),
                           desc="scanning", total=len(files), enabled=show_bar, transient=True)
    if annotate:
        results = _save_annotated(scanner, results, annotate, display_names(files))
    failed = 0
    if json_lines:
        for r in results:
            failed += not r.ok
            print(json.dumps(r.to_dict()), flush=True)
        raise typer.Exit(1 if failed else 0)

    names = display_names(files)
    table = Table(title="Cat Scanner")
    # "fold" wraps a long name or message onto the next line instead of cutting it with "…".
    table.add_column("photo", overflow="fold")
    table.add_column("cat?")
    table.add_column("p(cat)")
    table.add_column("breed mix", overflow="fold")
    table.add_column("where (l,t,r,b)")
    for r in results:
        name = names.get(r.path, r.path)
        if not r.ok:
            failed += 1
            table.add_row(name, "[red]error[/red]", "", r.error.message, "")
        else:
            box = r.box
            table.add_row(
                name, "[green]cat[/green]" if r.is_cat else "no cat", f"{r.cat_probability:.1%}",
                _breed_text(r), f"{box.left},{box.top},{box.right},{box.bottom}" if box else "",
            )
    console.print(table)
    if failed:
        err_console.print(f"[red]{failed} of {len(files)} photos could not be scanned.[/red]")
    raise typer.Exit(1 if failed else 0)


# --------------------------------------------------------------------------- models: train / fit / export


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        _fail("this command needs PyTorch: pip install torch==2.13.0 'catscanner[train]'")


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Oxford-IIIT Pet folder (images/, annotations/).")] = Path("../shared/data/oxford-iiit-pet"),
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, metrics.json, training_curves.png.")] = Path("runs/breeds"),
    config: Annotated[Optional[Path], typer.Option(help="JSON file with TrainConfig fields; flags override it.")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="efficientnet_lite0/1/2 or resnet50.")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Input size (default: the backbone's own).")] = None,
    head: Annotated[Optional[str], typer.Option(help="mlp3 (reference: 3 FC layers) or linear.")] = None,
    epochs: Annotated[Optional[int], typer.Option()] = None,
    batch_size: Annotated[Optional[int], typer.Option()] = None,
    lr_head: Annotated[Optional[float], typer.Option(help="Learning rate of the new head.")] = None,
    lr_backbone: Annotated[Optional[float], typer.Option(help="Learning rate of the pretrained backbone.")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option()] = None,
    mixup: Annotated[Optional[float], typer.Option(help="Mixup Beta(a, a); 0 = off.")] = None,
    distill: Annotated[Optional[float], typer.Option(help="Keep the ImageNet outputs (weight of the distillation loss) so one backbone pass serves detector and breeds; 0 = off.")] = None,
    crop_scale: Annotated[Optional[float], typer.Option(help="Smallest random-crop area share.")] = None,
    color_jitter: Annotated[Optional[float], typer.Option()] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only N training photos (quick checks).")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Local backbone weights (.pth) for resnet50.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt.")] = False,
) -> None:
    """Fine-tune the breed classifier on trainval (a validation set is carved out of it)."""
    _need_torch()
    from .train import TrainConfig, train as run_training

    overrides = {k: v for k, v in dict(
        data=str(data), out=str(out), backbone=backbone, image_size=image_size, head=head, epochs=epochs,
        batch_size=batch_size, lr_head=lr_head, lr_backbone=lr_backbone, label_smoothing=label_smoothing,
        mixup=mixup, distill=distill, crop_scale=crop_scale, color_jitter=color_jitter, seed=seed, limit=limit, weights=weights,
    ).items() if v is not None}
    cfg = TrainConfig.from_json(config, **overrides) if config else TrainConfig(**overrides)
    run_training(cfg, resume=resume)


@app.command("export-breeds")
def export_breeds_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="best.pt written by catscan train.")],
    out: Annotated[Path, typer.Option(help="ONNX file to write.")] = Path("src/catscanner/models/breeds.onnx"),
) -> None:
    """Export a trained breed checkpoint to ONNX for the scanner."""
    _need_torch()
    from .export import export_breeds

    console.print(f"wrote {export_breeds(checkpoint, out)}")


@app.command("fit-detector")
def fit_detector_cmd(
    data: Annotated[Path, typer.Option(help="Oxford-IIIT Pet folder.")] = Path("../shared/data/oxford-iiit-pet"),
    backbone: Annotated[str, typer.Option()] = "efficientnet_lite0",
    out: Annotated[Path, typer.Option(help="ONNX file to write.")] = Path("src/catscanner/models/detector.onnx"),
    target_recall: Annotated[float, typer.Option(help="Cat recall the threshold keeps in CV.")] = 0.995,
    checkpoint: Annotated[Optional[Path], typer.Option(help="A breed best.pt trained with --distill: fit on its ImageNet outputs and export one graph for both (write it to .../scanner.onnx).")] = None,
) -> None:
    """Fit the cat-detector rule on trainval (cats vs dogs) and export it as ONNX."""
    _need_torch()
    from .train import fit_detector

    fit_detector(str(data), backbone, out, target_recall, checkpoint=checkpoint)
    console.print(f"wrote {out}")


@app.command("check-weights")
def check_weights(
    data: Annotated[Path, typer.Option(help="Oxford-IIIT Pet folder.")] = Path("../shared/data/oxford-iiit-pet"),
    backbone: Annotated[list[str], typer.Option(help="Backbones to check (repeatable).")] = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
    weights: Annotated[Optional[str], typer.Option(help="Local weights file (for resnet50).")] = None,
) -> None:
    """ImageNet top-1 on the Oxford dogs whose breed is an ImageNet class: proves weights are real."""
    _need_torch()
    from .evaluate import imagenet_dog_accuracy

    table = Table(title="ImageNet top-1 on Oxford dog photos")
    for col in ("backbone", "photos with an ImageNet class", "top-1"):
        table.add_column(col)
    for name in backbone:
        r = imagenet_dog_accuracy(data, name, weights)
        table.add_row(name, f"{r['with_imagenet_class']} of {r['dog_photos']}", f"{r['top1']:.3f}")
    console.print(table)


# --------------------------------------------------------------------------- evaluation


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="Folder in the Oxford-IIIT Pet layout.")] = Path("../shared/data/oxford-iiit-pet"),
    split: Annotated[str, typer.Option(help="test, trainval, or val (the model's own validation photos).")] = "test",
    models: Annotated[Optional[Path], typer.Option(help="Folder with breeds.onnx.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print every number as JSON.")] = False,
    out: Annotated[Path, typer.Option(help="Folder for breed_metrics.json and confusion_matrix.png.")] = Path("reports"),
    tta: Annotated[bool, typer.Option(help="Average with the mirrored photo.")] = False,
) -> None:
    """Breed accuracy, precision/recall/F1 (micro, macro, weighted, per breed), ECE, confusion matrix."""
    from .evaluate import evaluate_breeds, plot_confusion, save_json

    try:
        m = evaluate_breeds(data, split, models, tta=tta)
    except CatScannerError as e:
        _fail(str(e))
    out.mkdir(parents=True, exist_ok=True)
    save_json(m, out / f"breed_metrics_{split}.json")
    png = plot_confusion(m, out / f"confusion_matrix_{split}.png")
    if json_out:
        print(json.dumps(m, indent=2))
        return
    t = Table(title=f"Breeds on {split} ({m['n']} photos): accuracy {m['accuracy']:.3f}")
    for col in ("average", "precision", "recall", "f1"):
        t.add_column(col)
    for avg in ("micro", "macro", "weighted"):
        t.add_row(avg, *(f"{m[avg][k]:.3f}" for k in ("precision", "recall", "f1")))
    console.print(t)
    pb = Table(title="Per breed")
    for col in ("breed", "precision", "recall", "f1", "support"):
        pb.add_column(col)
    for b, v in m["per_breed"].items():
        pb.add_row(b, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]))
    console.print(pb)
    console.print(f"expected calibration error {m['ece']:.4f} (before temperature scaling {m['uncalibrated_ece']:.4f}, "
                  f"T = {m['temperature']:.2f})\nconfusion matrix: {png}\nall numbers: {out / f'breed_metrics_{split}.json'}")


@app.command("evaluate-detector")
def evaluate_detector_cmd(
    data: Annotated[Path, typer.Option(help="Folder holding oxford-iiit-pet/ and coco128/.")] = Path("../shared/data"),
    models: Annotated[Optional[Path], typer.Option(help="Folder with detector.onnx.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print every number as JSON.")] = False,
) -> None:
    """Recall on test cats and false alarms on test dogs and COCO scenes, for both detector rules."""
    from .evaluate import evaluate_detector

    r = evaluate_detector(data, models)
    if json_out:
        print(json.dumps(r, indent=2))
        return
    t = Table(title=f"Cat detector (fitted-rule threshold {r['threshold']:.3f})")
    for col in ("photos", "n", "reference rule (top-1 in 281-285)", "fitted rule"):
        t.add_column(col)
    for s in r["sets"]:
        word = "found" if s["has_cat"] else "false alarms"
        t.add_row(s["set"], str(s["photos"]), f"{s['reference_rule_positive']} {word}", f"{s['fitted_rule_positive']} {word}")
    for rule, v in r["summary"].items():
        t.add_row(f"[bold]{rule.replace('_', ' ')}[/bold]", "", "", "")
        t.add_row("  recall on test cats", "", f"{v['recall']:.4f}" if rule == "reference_rule" else "", f"{v['recall']:.4f}" if rule == "fitted_rule" else "")
        t.add_row("  false alarms", str(v["negatives"]), f"{v['false_alarms']} ({v['false_alarm_rate']:.1%})" if rule == "reference_rule" else "",
                  f"{v['false_alarms']} ({v['false_alarm_rate']:.1%})" if rule == "fitted_rule" else "")
    console.print(t)
    for loc in r["localization"]:
        console.print(f"COCO cat {loc['photo']}: detected {loc['detected']}, box IoU with the label {loc['iou']:.2f}")


@app.command()
def bench(
    photos: Annotated[Optional[int], typer.Option(help="Test photos to use (default 200; 16 with --quick).", min=1)] = None,
    threads: Annotated[int, typer.Option(help="CPU threads for both pipelines.", min=1)] = 2,
    json_out: Annotated[Path, typer.Option(help="Where to write the JSON report.")] = Path("bench.json"),
    quick: Annotated[bool, typer.Option(help="A short run (few photos, one round).")] = False,
    data: Annotated[Optional[Path], typer.Option(help="Oxford-IIIT Pet folder (default $CATSCAN_DATA or ../shared/data/oxford-iiit-pet).")] = None,
    models: Annotated[Optional[Path], typer.Option(help="Folder with detector.onnx and breeds.onnx.")] = None,
    batch_size: Annotated[int, typer.Option(help="Photos per batch for the throughput test.", min=1)] = 8,
    reference_breeds: Annotated[str, typer.Option(help="always: the reference's breed net runs on every photo; cats: only on photos labelled cat.")] = "always",
) -> None:
    """Benchmark Cat Scanner against the reference (2x ResNet-50, PyTorch eager) on the same photos."""
    from .bench import run_bench

    try:
        run_bench(photos=photos, threads=threads, json_out=json_out, quick=quick, data=data, models=models,
                  batch_size=batch_size, reference_breeds=reference_breeds)
    except (CatScannerError, ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every network interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[Optional[int], typer.Option(help="Inference threads (default: one per CPU core).", min=1)] = None,
    models: Annotated[Optional[Path], typer.Option(help="Folder with detector.onnx and breeds.onnx.")] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest photo accepted, in MB.", min=0.01)] = 10.0,
    max_queue: Annotated[Optional[int], typer.Option(help="Photos that may be uploading or waiting for a free thread before the server answers 503 (busy); default 16.", min=0)] = None,
) -> None:
    """Run the web app: the page at http://HOST:PORT/, the JSON API at /api/v1/scan, docs at /docs."""
    import logging

    import uvicorn

    from .web import DEFAULT_MAX_QUEUE, create_app

    if models is not None and not (models / "detector.onnx").is_file():
        _fail(f"{models / 'detector.onnx'} not found: pass the folder that holds the exported models.")
    web_app = create_app(models, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                         max_queue=DEFAULT_MAX_QUEUE if max_queue is None else max_queue, threads=workers)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    logging.getLogger("catscanner").addHandler(handler)
    logging.getLogger("catscanner").setLevel(logging.INFO)
    err_console.print(f"Cat Scanner on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(web_app, host=host, port=port, log_level="info")
