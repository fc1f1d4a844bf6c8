"""Fitting the cat detector's rule on ImageNet outputs (``catscan fit-detector``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..runtime.imaging import Preprocess
from .backbones import BACKBONES, detector_features, load_backbone
from .data import map_batches, read_split
from .export import export_detector


DETECTOR_CANDIDATES = {  # name -> which of the 4 detector_features the logistic rule may use
    "domestic-cat mass": (0,),
    "domestic-cat + Mexican-hairless mass": (0, 2),
    "cat, wild-cat, hairless and dog masses": (0, 1, 2, 3),
}


@torch.no_grad()
def imagenet_logits(net, spec: Preprocess, paths: list[Path], desc: str) -> np.ndarray:
    """ImageNet logits ``net(x)`` for each photo (eval crop ``spec``), with progress."""
    def run(batch: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)).numpy()

    return np.concatenate(map_batches(paths, spec, run, f"ImageNet logits ({desc})"))


def fit_detector(data: str | Path, backbone: str, out: Path, target_recall: float = 0.995, seed: int = 0,
                 threads: int = 2) -> dict:
    """Fit the cat rule on ``trainval`` (cats vs dogs) and export ``detector.onnx``.

    Each candidate rule is a class-balanced logistic regression on ImageNet class-group
    log-probabilities. By 5-fold cross-validation on trainval we set, per candidate, the
    threshold that keeps ``target_recall`` of the cats, and keep the candidate with the fewest
    cross-validated false alarms on dogs (ties: fewer features). ``test`` is not read.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict


    torch.set_num_threads(threads)
    items = read_split(data, "trainval", species=None)
    y = np.array([it.species == "cat" for it in items], dtype=int)
    net, spec, desc = load_backbone(backbone), BACKBONES[backbone].preprocess, backbone
    logits = imagenet_logits(net, spec, [it.path for it in items], desc)
    feats = detector_features(torch.from_numpy(logits)).numpy()
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    report = []
    for name, cols in DETECTOR_CANDIDATES.items():
        lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
        p = cross_val_predict(lr, feats[:, cols], y, cv=cv, method="predict_proba")[:, 1]
        cat_scores = np.sort(p[y == 1])
        thr = float(cat_scores[int(np.floor((1 - target_recall) * len(cat_scores)))])
        report.append({"rule": name, "features": list(cols), "threshold": thr,
                       "cv_recall": float((p[y == 1] >= thr).mean()),
                       "cv_dog_false_alarms": int((p[y == 0] >= thr).sum()), "dogs": int((y == 0).sum())})
        print(f"{name}: CV recall {report[-1]['cv_recall']:.4f}, CV dog false alarms "
              f"{report[-1]['cv_dog_false_alarms']}/{report[-1]['dogs']} at threshold {thr:.3f}")
    best = min(report, key=lambda r: (r["cv_dog_false_alarms"], len(r["features"])))
    lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit(feats[:, best["features"]], y)
    coef = [0.0] * feats.shape[1]
    for c, w in zip(best["features"], lr.coef_[0]):
        coef[c] = float(w)
    print(f"chosen: {best['rule']} (coef {np.round(coef, 3).tolist()}, threshold {best['threshold']:.3f})")
    fitted = {"rule": best["rule"], "target_recall": target_recall, "candidates": report,
              "trainval_cats": int(y.sum()), "trainval_dogs": int((y == 0).sum())}
    export_detector(backbone, coef, float(lr.intercept_[0]), best["threshold"], out, {"fit": fitted})
    return fitted
