"""Stratified k-fold cross-validation of a breed training recipe (``catscan cross-validate``).

Each fold is an ordinary ``catscan train`` run (``--folds k --fold i --keep last``) in
``OUT/fold<i>/``; a fold whose ``val_predictions.npz`` exists is not trained again, so a stopped
run continues where it stopped. The report, ``OUT/cv.json`` and ``OUT/cv_confusion.png``, gives per
fold accuracy and macro-F1, their mean and spread, and the out-of-fold (OOF) predictions of all
photos pooled: a softmax temperature fitted on them (the one the all-photo model ships with) and
its expected calibration error measured cross-fitted (temperature fitted on the other folds).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..errors import CatScannerError
from ..runtime.breeds import softmax
from .config import TrainConfig
from .evaluate import breed_metrics, expected_calibration_error, plot_confusion
from .train import fit_temperature, train


def fold_config(cfg: TrainConfig, folds: int, fold: int) -> TrainConfig:
    """The training run of one fold: the recipe of ``cfg``, that fold held out, the last epoch kept."""
    return replace(cfg, folds=folds, fold=fold, keep="last", temperature=0.0,
                   out=str(Path(cfg.out) / f"fold{fold}"))


FOLD_MAY_DIFFER = ("threads", "out", "data")  # what a finished fold may have been trained with differently


def check_finished_fold(fold_cfg: TrainConfig) -> None:
    """A finished fold counts only if it was trained with this recipe, this k and this fold: a
    :class:`CatScannerError` naming what differs (another run's folds would be reported as this one's)."""
    folder = Path(fold_cfg.out)
    try:
        stored = json.loads((folder / "metrics.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CatScannerError(f"{folder} holds predictions but no readable metrics.json: it was not written by "
                              "this command; cross-validate into a new --out.") from None
    changed = fold_cfg.changed_from(stored, FOLD_MAY_DIFFER)
    if changed:
        raise CatScannerError(f"{folder} was trained with other settings ({', '.join(changed)}): cross-validate "
                              "into a new --out, or with the flags (and --k) it was trained with.")


def cross_validate(cfg: TrainConfig, folds: int = 5) -> dict:
    """Train ``folds`` fold models of the recipe ``cfg`` (skipping finished ones) and report."""
    for i in range(folds):
        fold_cfg = fold_config(cfg, folds, i)
        if (Path(fold_cfg.out) / "val_predictions.npz").exists():
            check_finished_fold(fold_cfg)
            print(f"fold {i + 1}/{folds}: done earlier ({fold_cfg.out})")
            continue
        print(f"fold {i + 1}/{folds}: training in {fold_cfg.out}", flush=True)
        train(fold_cfg, resume=True)
    return report(cfg, folds)


def report(cfg: TrainConfig, folds: int, predictions: str = "val_predictions.npz", name: str = "cv") -> dict:
    """The cross-validation report from the folds' saved validation predictions: of every fold, or of
    the folds finished so far (``folds_done`` says how many; at least two are needed).

    ``predictions``: the file in each fold folder to read (another reading of the same held-out
    photos, e.g. at another input size); ``name``: the report's files, OUT/<name>.json and
    OUT/<name>_confusion.png."""
    out = Path(cfg.out)
    files = [Path(fold_config(cfg, folds, i).out) / predictions for i in range(folds)]
    done = [i for i, f in enumerate(files) if f.exists()]
    for i in done:
        check_finished_fold(fold_config(cfg, folds, i))
    if len(done) < 2:
        raise CatScannerError(f"{len(done)} of {folds} folds finished in {out}: a report needs at least 2.")
    preds = [np.load(files[i]) for i in done]
    per_fold = []
    for i, p in zip(done, preds):
        m = breed_metrics(p["labels"], softmax(p["logits"]))
        per_fold.append({"fold": i, "photos": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro"]["f1"]})
    logits = np.concatenate([p["logits"] for p in preds])
    labels = np.concatenate([p["labels"] for p in preds])
    temperature = fit_temperature(logits, labels)
    # ECE with the temperature fitted on the other folds only (no photo calibrates itself)
    crossfit = []
    for i, p in enumerate(preds):
        others = [q for j, q in enumerate(preds) if j != i]
        t = fit_temperature(np.concatenate([q["logits"] for q in others]), np.concatenate([q["labels"] for q in others]))
        crossfit.append(softmax(p["logits"], t))
    crossfit = np.concatenate(crossfit)
    oof = breed_metrics(labels, softmax(logits, temperature))
    oof["split"] = f"{folds}-fold out-of-fold" + ("" if len(done) == folds else f" ({len(done)} folds)")
    acc = np.array([f["accuracy"] for f in per_fold])
    f1 = np.array([f["macro_f1"] for f in per_fold])
    result = {
        "recipe": asdict(replace(cfg, folds=folds, fold=0)),
        "folds_done": len(done), "k": folds,
        "folds": per_fold,
        "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)),
        "macro_f1_mean": float(f1.mean()), "macro_f1_std": float(f1.std(ddof=1)),
        "temperature": temperature,
        "ece_crossfit_temperature": expected_calibration_error(crossfit, labels),
        "ece_uncalibrated": expected_calibration_error(softmax(logits), labels),
        "out_of_fold": oof,
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    plot_confusion(oof, out / f"{name}_confusion.png")
    return result
