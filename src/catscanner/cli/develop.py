"""Model-development commands: train, fit, export, evaluate, check weights, benchmark.

They need the training extra (``pip install torch==2.13.0 "catscanner[train]"``); each imports it
only when run, so ``catscan scan`` never loads PyTorch.
"""

from __future__ import annotations

import inspect
import json
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import CatScannerError
from ..runtime.contract import BREEDS_FILE, DETECTOR_FILE, default_model_dir
from .common import console, fail, writable_folder


def _need(modules: tuple[str, ...], what: str, install: str) -> None:
    """A usage error naming ``what`` and how to ``install`` it when one of ``modules`` cannot be imported."""
    import importlib

    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        fail(f"this command needs {what or ', '.join(missing)}: {install}")


def need_torch() -> None:
    _need(("torch",), "PyTorch", "pip install torch==2.13.0 'catscanner[train]'")


def need_measuring_tools() -> None:
    """The evaluations need the training extra's scientific libraries (not PyTorch)."""
    _need(("scipy", "sklearn", "matplotlib"), "", "pip install 'catscanner[train]'")


def data_root(path: Path | None = None) -> Path:
    from ..training.data import data_root as resolve

    return resolve(path)


def oxford_root(path: Path | None = None) -> Path:
    from ..training.data import oxford_root as resolve

    return resolve(path)


def _train(config: Optional[Path] = None, resume: bool = False, **options) -> None:
    """Fine-tune the breed classifier on --photos (default trainval, less a validation carve-out; the shipped model: all).

    Every option is a field of TrainConfig; flags override a JSON --config.
    """
    need_torch()
    from ..training.train import train as run_training

    cfg = _config(config, options)
    try:
        run_training(cfg, resume=resume)
    except (CatScannerError, OSError) as e:  # OSError: e.g. --out is a file
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted: the epochs finished so far are in {cfg.out}/checkpoint.pt; the same command with "
             "--resume continues from there.", code=130)


def _config_options() -> list[inspect.Parameter]:
    """One ``--flag`` per TrainConfig field, with its type and help (default None: keep the config's)."""
    from ..training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    params = []
    for f in fields(TrainConfig):
        base = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        default = "" if f.default is MISSING else f" [default: {f.default!r}]"
        option = typer.Option(help=f.metadata.get("help", "") + default, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[Optional[base], option]))
    return params


def _config(config: Optional[Path], options: dict, defaults: dict | None = None):
    """The TrainConfig of the flags set in ``options``, over the --config file, over ``defaults``."""
    from ..training.config import TrainConfig

    overrides = {k: v for k, v in options.items() if v is not None}
    try:
        return (TrainConfig.from_json(config, defaults, **overrides) if config
                else TrainConfig(**{**(defaults or {}), **overrides}))
    except (ValueError, TypeError) as e:
        fail(str(e))


_CONFIG_FILE = inspect.Parameter(
    "config", inspect.Parameter.KEYWORD_ONLY, default=None,
    annotation=Annotated[Optional[Path], typer.Option(help="JSON file with TrainConfig fields; flags override it.")])


def train_command():
    """``catscan train`` with its options generated from TrainConfig."""
    def train(**kwargs) -> None:
        _train(**kwargs)

    train.__doc__ = _train.__doc__
    train.__signature__ = inspect.Signature([
        _CONFIG_FILE,
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt.")]),
        *_config_options(),
    ])
    return train


def cross_validate_command():
    """``catscan cross-validate``: the k-fold report of a training recipe (TrainConfig's flags)."""
    def cross_validate(config: Optional[Path] = None, k: int = 5, report_only: bool = False, **options) -> None:
        """Cross-validate a breed training recipe: train one model per fold of a stratified k-fold
        over --photos (default all 2,100 cats), then report accuracy and macro-F1 per fold, mean and
        spread, the out-of-fold temperature and its calibration (OUT/cv.json, OUT/cv_confusion.png).
        Finished folds are not retrained; --report-only reports the folds finished so far."""
        need_torch()
        from ..training.crossval import cross_validate as run, fold_config, report

        cfg = _config(config, options, defaults={"photos": "all"})  # the documented default, with --config too
        if k < 2:
            fail("--k must be at least 2")
        try:
            fold_config(cfg, k, 0)  # a recipe the folds cannot train with (e.g. --val-fraction in --config)
        except ValueError as e:
            fail(str(e))
        try:
            r = report(cfg, k) if report_only else run(cfg, k)
        except CatScannerError as e:
            fail(str(e))
        done = "" if r["folds_done"] == k else f" ({r['folds_done']} folds finished)"
        table = Table("fold", "photos", "accuracy", "macro-F1", title=f"{k}-fold cross-validation{done}, {cfg.out}")
        for f in r["folds"]:
            table.add_row(str(f["fold"]), str(f["photos"]), f"{f['accuracy']:.3f}", f"{f['macro_f1']:.3f}")
        table.add_row("mean ± sd", str(sum(f["photos"] for f in r["folds"])),
                      f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}", f"{r['macro_f1_mean']:.3f} ± {r['macro_f1_std']:.3f}")
        console.print(table)
        console.print(f"out-of-fold temperature {r['temperature']:.2f}; ECE {r['ece_crossfit_temperature']:.3f} "
                      f"(temperature fitted on the other folds), {r['ece_uncalibrated']:.3f} uncalibrated")

    cross_validate.__signature__ = inspect.Signature([
        _CONFIG_FILE,
        inspect.Parameter("k", inspect.Parameter.KEYWORD_ONLY, default=5,
                          annotation=Annotated[int, typer.Option("--k", help="Number of folds.")]),
        inspect.Parameter("report_only", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=Annotated[bool, typer.Option(help="Train nothing: report the folds finished so far.")]),
        *[p for p in _config_options() if p.name not in ("folds", "fold", "keep", "temperature", "val_fraction")],
    ])
    return cross_validate


def fit_detector(
    data: Annotated[Optional[Path], typer.Option(help="Folder holding oxford-iiit-pet/ and coco128/ (default $CATSCAN_DATA or ../shared/data).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="ONNX file to write (default: the shipped detector, in the package's models folder).")] = None,
    scenes: Annotated[int, typer.Option(help="Composite scenes to train on (besides the plain photos).", min=0)] = 8000,
    epochs: Annotated[int, typer.Option(help="Training epochs of the detector head.", min=1)] = 10,
    threads: Annotated[int, typer.Option(help="CPU threads.", min=1, max=256)] = 2,
    seed: Annotated[int, typer.Option(help="Random seed (scenes and training).")] = 0,
    refit_all: Annotated[bool, typer.Option(help="After choosing the score and thresholds on held-out cats, train the head again on all fit photos.")] = True,
    box_classifier: Annotated[bool, typer.Option(help="Verify candidate boxes with a linear classifier on their 1,000 ImageNet log-probabilities as well (measured: fewer cats found at the same false alarms; see the model card).")] = False,
    cache: Annotated[Optional[Path], typer.Option(help="Folder to keep the backbone features in and reuse them from (they take minutes).")] = None,
    dropout: Annotated[float, typer.Option(help="Share of the head's input features zeroed at each training step.", min=0.0, max=0.9)] = 0.0,
    look_size: Annotated[int, typer.Option(help="Second look: side in pixels of the crop of each likely box run through the graph again (0: no second look).", min=0, max=640)] = 192,
    look_count: Annotated[int, typer.Option(help="Second look: at most this many boxes per photo, most probable first.", min=1, max=20)] = 3,
    look_floor: Annotated[float, typer.Option(help="Second look: boxes whose first score is below this are dropped unexamined.", min=0.0, max=1.0)] = 0.1,
    look_reuse: Annotated[float, typer.Option(help="Second look: a box whose crop would cover at least this share of the photo reuses the first pass's outputs on the whole photo instead of a crop (0: every box is cut out and run again).", min=0.0, max=1.0)] = 0.3333,
    run_pixels: Annotated[int, typer.Option(help="The first pass's size at run time, in pixels: the scores and thresholds are chosen at this size.", min=20_000, max=400_000)] = 75_000,
    train_pixels: Annotated[int, typer.Option(help="The size, in pixels, of the photos and scenes whose backbone features (cached) the head trains on.", min=20_000, max=400_000)] = 50_000,
    stride: Annotated[int, typer.Option(help="Input pixels per heat-map cell: 16, or 8 (also reads the backbone's stride-8 features: for small cats).")] = 16,
    fine_input: Annotated[bool, typer.Option(help="A stride-16 head also reads the backbone's stride-8 features (detail for small cats; about the same work).")] = False,
    heads: Annotated[int, typer.Option(help="Train this many heads (seeds --seed, --seed + 1, ...) and export their average as the detector's head.", min=1, max=8)] = 3,
    turned: Annotated[bool, typer.Option(help="Also train on a copy of each cat and dog photo turned on its side (90 or 270 degrees): cats lying down or photographed sideways.")] = False,
    turned_dogs: Annotated[float, typer.Option(help="Share of the dog photos in the training scenes (backgrounds and distractors) turned on their side, and each dog photo trained on turned as well (0: none): dogs lying down or photographed sideways are not cats.", min=0.0, max=1.0)] = 0.0,
    first_head: Annotated[Optional[Path], typer.Option(help="With --refit-all, also write the head trained on four fifths (the one the thresholds were chosen with) to this ONNX file, for benchmarks/check_scenes.py.")] = None,
) -> None:
    """Train the whole-frame cat detector's head on the fit data (Oxford trainval, half of COCO) and export it.
    The defaults are the shipped detector's recipe (see its model card)."""
    need_torch()
    from ..training.fit_detector import SecondLook, fit_detector as fit

    if stride not in (8, 16):
        fail(f"--stride must be 8 or 16 (got {stride}).")
    if first_head is not None and not refit_all:
        fail("--first-head needs --refit-all: without the refit, --out is already the four-fifths head.")

    try:
        look = SecondLook(look_size, look_count, look_floor, reuse=look_reuse) if look_size else None
    except ValueError as e:
        fail(f"--look-size/--look-count/--look-floor: {e}.")
    out = out or default_model_dir() / DETECTOR_FILE
    for path, what in ((out, "--out"), (first_head, "--first-head")):
        if path is not None:
            _writable_file(path, what)
    if cache is not None and cache.exists() and not cache.is_dir():
        fail(f"--cache {cache} is a file: give a folder for the features.")
    try:
        fit(data, out, n_scenes=scenes, epochs=epochs, threads=threads, seed=seed, refit_all=refit_all,
            box_classifier=box_classifier, cache=cache, dropout=dropout, look=look, stride=stride,
            first_head=first_head, fine_input=fine_input, run_pixels=run_pixels, train_pixels=train_pixels,
            heads=heads, turned=turned, turned_dogs=turned_dogs)
    except (CatScannerError, OSError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        features = (f"the backbone features are kept in {cache} once all of them are computed" if cache
                    else "with --cache the backbone features are kept for the next run")
        fail(f"interrupted: {out} was not written; {features}.", code=130)
    console.print(f"wrote {out}")


def evaluate(
    data: Annotated[Optional[Path], typer.Option(help="Labelled cat photos: a folder in the Oxford-IIIT Pet layout, a folder per breed (DATA/<Breed>/*.jpg) or a CSV (path,breed). Default: the shared Oxford data.")] = None,
    split: Annotated[str, typer.Option(help="test, trainval, or val (the model's own validation photos).")] = "test",
    models: Annotated[Optional[Path], typer.Option(help="Folder with breeds.onnx.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print every number as JSON.")] = False,
    out: Annotated[Path, typer.Option(help="Folder for breed_metrics_NAME.json and confusion_matrix_NAME.png (NAME: the split for the Oxford layout, else the CSV's or folder's name).")] = Path("reports"),
    tta: Annotated[bool, typer.Option(help="Average with the mirrored photo.")] = False,
) -> None:
    """Breed accuracy, precision/recall/F1 (micro, macro, weighted, per breed), ECE, confusion matrix."""
    need_measuring_tools()
    from ..training.data import photo_set_name
    from ..training.evaluate import evaluate_breeds, plot_confusion, save_json

    _writable_folder(out)
    data = data or oxford_root()
    try:
        m = evaluate_breeds(data, split, models, tta=tta)
    except CatScannerError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted: no report was written to {out}.", code=130)
    name = photo_set_name(data, split)
    save_json(m, out / f"breed_metrics_{name}.json")
    png = plot_confusion(m, out / f"confusion_matrix_{name}.png")
    if json_out:
        print(json.dumps(m, indent=2))
        return
    t = Table(title=f"Breeds on {name} ({m['n']} photos): accuracy {m['accuracy']:.3f}")
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
                  f"T = {m['temperature']:.2f})\nconfusion matrix: {png}\nall numbers: {out / f'breed_metrics_{name}.json'}")


def evaluate_detector(
    data: Annotated[Optional[Path], typer.Option(help="Folder holding oxford-iiit-pet/ and coco128/ (default $CATSCAN_DATA or ../shared/data).")] = None,
    models: Annotated[Optional[Path], typer.Option(help="Folder with detector.onnx and breeds.onnx.")] = None,
    scenes: Annotated[int, typer.Option(help="Report-split composite scenes to scan.", min=1)] = 800,
    out: Annotated[Path, typer.Option(help="Folder for detector_metrics.json and reliability.png.")] = Path("reports"),
    json_out: Annotated[bool, typer.Option("--json", help="Print every number as JSON.")] = False,
) -> None:
    """The whole-frame detector on data it was not fitted on: scenes with 1-3 cats of every shape,
    Oxford test cats and dogs, cat-free COCO photos; calibration with its reliability diagram."""
    need_measuring_tools()
    from ..training.evaluate import evaluate_detector as run, plot_reliability, save_json

    _writable_folder(out)
    try:
        r = run(data_root(data), models, scenes=scenes)
    except CatScannerError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted: no report was written to {out}.", code=130)
    save_json(r, out / "detector_metrics.json")
    png = plot_reliability(r, out / "reliability.png")
    if json_out:
        print(json.dumps(r, indent=2))
        return
    t = Table(title="Cat detector, whole frame (data it was not fitted on)")
    for col in ("photo set", "photos", "with a cat called cat", "cats found", "extra boxes / photo",
                "false alarms", "top breed right (found cats)"):
        t.add_column(col)
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    for name, s in r["sets"].items():
        fa = f"{s['false_alarms']} of {s['cat_free_photos']}" if s["cat_free_photos"] else "—"
        t.add_row(name, str(s["photos"]), fmt(s["is_cat_on_cat_photos"]), fmt(s["cats_found"]),
                  fmt(s["extra_boxes_per_photo"]), fa, fmt(s["breed_top1_of_found"]))
    console.print(t)
    for key, title in (("report_scenes_by_shape", "shape"), ("report_scenes_by_position", "position of the cat"),
                       ("report_scenes_by_size", "size of the cat")):
        bt = Table(title=f"Scene cats found, by {title}")
        bt.add_column(title)
        bt.add_column("cats")
        bt.add_column("found")
        for k, v in r[key].items():
            bt.add_row(k, str(v["cats"]), f"{v['found']:.3f}")
        console.print(bt)
    s = r["summary"]
    ci = {k: f"95 % interval {v[0]:.1%}-{v[1]:.1%}" if v else "no photos" for k, v in s["intervals_95"].items()}
    console.print(f"false alarms on test dogs + unseen cat-free COCO: {s['false_alarms']} of {s['negatives']} "
                  f"({s['false_alarm_rate']:.1%}; {ci['false_alarm_rate']}); Oxford test cat recall "
                  f"{s['oxford_test_cat_recall']:.4f} ({ci['oxford_test_cat_recall']}); report scene photos with "
                  f"a cat called cat {s['scene_photos_with_cat_called_cat']:.3f} ({ci['scene_photos_with_cat_called_cat']})")
    console.print(f"calibration of cat_probability over {r['calibration']['photos']} photos: ECE "
                  f"{r['calibration']['ece']:.4f} (reliability diagram: {png})")
    for loc in r["localization"]:
        console.print(f"COCO cat in {loc['photo']}: best box IoU with the label {loc['iou']:.2f}")
    console.print(f"wild cats: {r['wild_cats']}\nall numbers: {out / 'detector_metrics.json'}")


def bench(
    photos: Annotated[Optional[int], typer.Option(help="Oxford test photos (default 200; 8 with --quick).", min=1)] = None,
    shape_photos: Annotated[Optional[int], typer.Option(help="Photos of each generated shape: 640x480, 12 MP, 3:1 panorama, 9:16 portrait (default 20; 2 with --quick).", min=1)] = None,
    rounds: Annotated[Optional[int], typer.Option(help="Interleaved rounds (default 8; 2 with --quick).", min=1)] = None,
    threads: Annotated[int, typer.Option(help="CPU threads for both pipelines.", min=1)] = 2,
    runtime: Annotated[str, typer.Option(help="Cat Scanner's runtime: auto, openvino or onnxruntime (as Scanner(runtime=...)).")] = "auto",
    precision: Annotated[str, typer.Option(help="Cat Scanner's precision: auto, f32 or bf16 (as Scanner(precision=...)).")] = "auto",
    json_out: Annotated[Path, typer.Option(help="Where to write the JSON report.")] = Path("bench.json"),
    quick: Annotated[bool, typer.Option(help="A short run (few photos, two rounds).")] = False,
    data: Annotated[Optional[Path], typer.Option(help="Oxford-IIIT Pet folder (default $CATSCAN_DATA or ../shared/data/oxford-iiit-pet; coco128 beside it).")] = None,
    models: Annotated[Optional[Path], typer.Option(help="Folder with detector.onnx and breeds.onnx.")] = None,
    batch_size: Annotated[int, typer.Option(help="Photos per batch for the throughput test.", min=1)] = 8,
    reference_breeds: Annotated[str, typer.Option(help="always: the reference's breed net runs on every photo; cats: only on photos labelled cat.")] = "always",
) -> None:
    """Benchmark Cat Scanner against the reference (2x ResNet-50, PyTorch eager), interleaved in one run,
    on Oxford photos and on 640x480, 12 MP, panorama and portrait photos."""
    need_torch()  # the reference pipeline is PyTorch (in the benchmark's worker processes)
    from ..bench import run_bench

    if json_out.is_dir():
        fail(f"--json-out {json_out} is a folder: give the file to write, e.g. {json_out / 'bench.json'}.")
    writable_folder(json_out.parent, "--json-out")
    try:
        run_bench(photos=photos, shape_photos=shape_photos, rounds=rounds, threads=threads, runtime=runtime,
                  precision=precision, json_out=json_out, quick=quick, data=data, models=models,
                  batch_size=batch_size, reference_breeds=reference_breeds)
    except (CatScannerError, ValueError, FileNotFoundError, RuntimeError) as e:
        fail(str(e))



def check_weights(
    data: Annotated[Optional[Path], typer.Option(help="Oxford-IIIT Pet folder (default: the shared data).")] = None,
    backbone: Annotated[list[str], typer.Option(help="Backbones to check (repeatable).")] = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
    weights: Annotated[Optional[str], typer.Option(help="Local weights file (for resnet50).")] = None,
) -> None:
    """ImageNet top-1 on the Oxford dogs whose breed is an ImageNet class: proves weights are real."""
    need_torch()
    from ..training.evaluate import imagenet_dog_accuracy

    table = Table(title="ImageNet top-1 on Oxford dog photos")
    for col in ("backbone", "photos with an ImageNet class", "top-1"):
        table.add_column(col)
    for name in backbone:
        try:
            r = imagenet_dog_accuracy(oxford_root(data), name, weights)
        except (CatScannerError, OSError) as e:
            fail(str(e))
        except Exception as e:  # a weights file that is not a PyTorch state dict (torch raises its own types)
            fail(f"--weights {weights}: cannot be loaded as {name} weights ({type(e).__name__}: {e}).")
        table.add_row(name, f"{r['with_imagenet_class']} of {r['dog_photos']}", f"{r['top1']:.3f}")
    console.print(table)



def export_breeds(
    checkpoint: Annotated[Path, typer.Argument(help="best.pt written by catscan train.")],
    out: Annotated[Optional[Path], typer.Option(help="ONNX file to write (default: the shipped breed model, in the package's models folder).")] = None,
    read_size: Annotated[int, typer.Option(help="Read the same centre crop at this many pixels instead of "
                                                "the training size (0: the training size).")] = 0,
) -> None:
    """Export a trained breed checkpoint to ONNX for the scanner."""
    need_torch()
    from ..training.export import export_breeds

    if read_size < 0:
        fail(f"--read-size must be 0 (the training size) or more, not {read_size}.")
    out = out or default_model_dir() / BREEDS_FILE
    _writable_file(out, "--out")
    try:
        console.print(f"wrote {export_breeds(checkpoint, out, read_size=read_size)}")
    except (CatScannerError, OSError) as e:
        fail(str(e))


def _writable_folder(out: Path) -> None:
    """``--out`` made now (a usage error if it cannot be), before the work whose results go there."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file: give a folder for the reports.")
    writable_folder(out, "--out")


def _writable_file(path: Path, what: str) -> None:
    """A usage error now, not after hours of work, when ``path`` cannot become a file."""
    if path.is_dir():
        fail(f"{what} {path} is a folder: give the file to write, e.g. {path / 'model.onnx'}.")
    writable_folder(path.parent, what)


