"""Measure the shipped models on data in the Oxford-IIIT Pet layout (and COCO for the detector).

Runtime models only (ONNX Runtime), so evaluation measures exactly what users get; the
ImageNet weight check (:func:`imagenet_dog_accuracy`) is the one PyTorch-side measurement.
Metrics come from scikit-learn.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import CatScannerError
from ..runtime.breeds import BREEDS, BreedClassifier, softmax
from ..runtime.contract import ModelFiles, Output
from ..runtime.detector import reference_rule
from ..runtime.onnx_model import OnnxModel
from ..runtime.scanner import Scanner
from .data import map_batches, read_coco, read_photo_set, read_split, stratified_holdout

# Oxford dog breeds with a one-to-one ImageNet class (american_bulldog, havanese and shiba_inu
# have none).
OXFORD_DOG_TO_IMAGENET = {
    "american_pit_bull_terrier": 180, "basset_hound": 161, "beagle": 162, "boxer": 242,
    "chihuahua": 151, "english_cocker_spaniel": 219, "english_setter": 212,
    "german_shorthaired": 210, "great_pyrenees": 257, "japanese_chin": 152, "keeshond": 261,
    "leonberger": 255, "miniature_pinscher": 237, "newfoundland": 256, "pomeranian": 259,
    "pug": 254, "saint_bernard": 247, "samoyed": 258, "scottish_terrier": 199,
    "staffordshire_bull_terrier": 179, "wheaten_terrier": 202, "yorkshire_terrier": 187,
}


# --------------------------------------------------------------------------- breeds


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence over equal-width bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def breed_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Every number of the breed report from true labels and predicted probabilities (N, 12)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    pred = probs.argmax(1)
    idx = list(range(len(BREEDS)))
    out: dict = {"n": int(len(labels)), "accuracy": float(accuracy_score(labels, pred))}
    for avg in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, pred, labels=idx, average=avg, zero_division=0)
        out[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=idx, zero_division=0)
    out["per_breed"] = {
        b: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, b in enumerate(BREEDS)
    }
    out["ece"] = expected_calibration_error(probs, labels)
    out["nll"] = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1))))
    out["confusion_matrix"] = confusion_matrix(labels, pred, labels=idx).tolist()
    return out


def breed_split(data: str | Path, split: str, train_config: dict) -> list:
    """Cat photos of ``trainval``/``test``, or ``val``: the validation photos the model was tuned on
    (carved out of trainval with the training run's own fraction and seed)."""
    if split != "val":
        return read_photo_set(data, split)
    if "val_fraction" not in train_config:
        raise CatScannerError("This breed model does not record its validation split; use trainval or test.")
    seed = train_config.get("val_seed", train_config["seed"])
    return stratified_holdout(read_split(data, "trainval"), train_config["val_fraction"], seed)[1]


def evaluate_breeds(data: str | Path, split: str = "test", model_dir: str | Path | None = None,
                    tta: bool = False) -> dict:
    """Breed metrics of the shipped breed model on every cat photo of ``split``."""
    files = ModelFiles.resolve(model_dir)
    if files.breeds is None:
        raise CatScannerError(f"No breed model in {files.folder}.")
    breeds_path = files.breeds
    clf = BreedClassifier(OnnxModel(breeds_path))
    items = breed_split(data, split, clf.model.meta.details.get("config", {}))
    labels = np.array([it.label for it in items])

    def run(batch: np.ndarray) -> np.ndarray:
        logits = clf.model.run(batch)[Output.BREED_LOGITS]
        if tta:  # average with the mirrored photo
            logits = (logits + clf.model.run(batch[..., ::-1].copy())[Output.BREED_LOGITS]) / 2
        return logits

    logits = np.concatenate(map_batches([it.path for it in items], clf.preprocess, run, f"breeds on {split}"))
    metrics = breed_metrics(labels, softmax(logits, clf.temperature))
    metrics["uncalibrated_ece"] = expected_calibration_error(softmax(logits), labels)
    metrics.update({"split": split, "data": str(data), "temperature": clf.temperature, "tta": tta,
                    "model": str(breeds_path)})
    return metrics


def plot_confusion(metrics: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(metrics["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(BREEDS)), BREEDS, rotation=45, ha="right")
    ax.set_yticks(range(len(BREEDS)), BREEDS)
    for i in range(len(BREEDS)):
        for j in range(len(BREEDS)):
            if cm[i, j]:
                ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true",
           title=f"Breeds on {metrics['split']}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro']['f1']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class DetectorSet:
    name: str
    paths: list[Path]
    has_cat: bool


def detector_sets(data_root: str | Path) -> list[DetectorSet]:
    """Test cats, test dogs and the COCO photos without a cat (``data_root`` holds both datasets)."""
    root = Path(data_root)
    test = read_split(root / "oxford-iiit-pet", "test", species=None)
    coco = read_coco(root / "coco128")
    return [
        DetectorSet("Oxford test cats", [it.path for it in test if it.species == "cat"], True),
        DetectorSet("Oxford test dogs", [it.path for it in test if it.species == "dog"], False),
        DetectorSet("COCO photos without a cat", [p.path for p in coco if not p.cat_boxes], False),
        DetectorSet("COCO photos with a cat", [p.path for p in coco if p.cat_boxes], True),
    ]


def evaluate_detector(data_root: str | Path, model_dir: str | Path | None = None) -> dict:
    """Recall / false alarms of the reference rule and the fitted rule on each photo set."""
    scanner = Scanner(model_dir)
    det = scanner.detector
    rows = []
    for s in detector_sets(data_root):
        outs = map_batches(s.paths, det.preprocess, det.model.run, s.name)
        prob = np.concatenate([o[Output.CAT_PROBABILITY] for o in outs])
        ref = reference_rule(np.concatenate([o[Output.IMAGENET_LOGITS] for o in outs]))
        fitted = prob >= det.threshold
        rows.append({"set": s.name, "photos": len(s.paths), "has_cat": s.has_cat,
                     "reference_rule_positive": int(ref.sum()), "fitted_rule_positive": int(fitted.sum()),
                     "missed_by_fitted_rule": [p.name for p, f in zip(s.paths, fitted) if f != s.has_cat][:50]})
    negatives = [r for r in rows if not r["has_cat"]]
    cats = rows[0]
    summary = {}
    for rule in ("reference_rule", "fitted_rule"):
        fa = sum(r[f"{rule}_positive"] for r in negatives)
        n_neg = sum(r["photos"] for r in negatives)
        summary[rule] = {"recall": cats[f"{rule}_positive"] / cats["photos"], "false_alarms": fa,
                         "negatives": n_neg, "false_alarm_rate": fa / n_neg}
    return {"sets": rows, "summary": summary, "threshold": det.threshold, "model": str(det.model.path),
            "localization": coco_localization(Path(data_root) / "coco128", scanner)}


def _iou(a: tuple, b: tuple) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def coco_localization(coco_root: str | Path, scanner: Scanner) -> list[dict]:
    """IoU between the scanner's cat box and the labelled COCO cat box, per photo with a cat."""
    out = []
    for photo in read_coco(coco_root):
        if not photo.cat_boxes:
            continue
        r = scanner.scan(photo.path)
        W, H = r.width, r.height
        truth = [((x - w / 2) * W, (y - h / 2) * H, (x + w / 2) * W, (y + h / 2) * H) for x, y, w, h in photo.cat_boxes]
        iou = max(_iou((r.box.left, r.box.top, r.box.right, r.box.bottom), t) for t in truth) if r.box else 0.0
        out.append({"photo": photo.path.name, "detected": r.is_cat, "box": asdict(r.box) if r.box else None,
                    "iou": round(iou, 3)})
    return out


# --------------------------------------------------------------------------- ImageNet weight check


def imagenet_dog_accuracy(data: str | Path, backbone: str, weights: str | None = None) -> dict:
    """Top-1 ImageNet accuracy of a backbone on the Oxford dogs whose breed is an ImageNet class
    (PyTorch; proves the loaded weights are real ImageNet weights)."""
    import torch

    from .backbones import BACKBONES, load_backbone

    model = load_backbone(backbone, weights)
    spec = BACKBONES[backbone].preprocess
    items = [it for split in ("trainval", "test") for it in read_split(data, split, species="dog")]
    known = [it for it in items if it.breed.lower() in OXFORD_DOG_TO_IMAGENET]
    with torch.no_grad():
        outs = map_batches([it.path for it in known], spec, lambda b: model(torch.from_numpy(b)).numpy(), backbone)
    pred = np.concatenate(outs).argmax(1)
    truth = np.array([OXFORD_DOG_TO_IMAGENET[it.breed.lower()] for it in known])
    return {"backbone": backbone, "dog_photos": len(items), "with_imagenet_class": len(known),
            "top1": float((pred == truth).mean())}


def save_json(obj: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(obj, indent=2))
