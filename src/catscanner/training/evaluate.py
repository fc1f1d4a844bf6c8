"""Measure the shipped models on data in the Oxford-IIIT Pet layout (and COCO for the detector).

Runtime models only: the detector's report goes through the :class:`Scanner` users get (its
runtime and precision); the breed report runs the breed model on ONNX Runtime in float32 on each
photo's centre crop, as it was trained and exported (the Oxford photos are pet portraits). The
ImageNet weight check (:func:`imagenet_dog_accuracy`) is the one PyTorch-side measurement.
Metrics come from scikit-learn and SciPy.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import CatScannerError
from ..runtime.breeds import BREEDS, BreedClassifier, softmax
from ..runtime.contract import ModelFiles, Output
from ..runtime.engine import OrtModel
from ..runtime.scanner import Scanner
from ..progress import progress_bar
from .config import TrainConfig
from .data import data_root, map_batches, read_coco, read_photo_set, read_split, training_items
from .metrics import PhotoOutcome, iou, match, proportion_interval, reliability, summarize
from .metrics import expected_calibration_error as expected_calibration_error_binary

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
    """Cat photos of ``trainval``/``test``, or ``val``: the validation photos of the model's own
    training run (its hold-out or its held-out fold, from the config stored in the model)."""
    if split != "val":
        return read_photo_set(data, split)
    if "val_fraction" not in train_config:
        raise CatScannerError("This breed model does not record its validation split; use trainval or test.")
    cfg = TrainConfig.from_stored(train_config)
    cfg.data, cfg.limit = str(data), 0
    cfg.val_seed = train_config.get("val_seed", train_config["seed"])
    val = training_items(cfg)[1]
    if not val:
        raise CatScannerError("This breed model was trained without a validation set; use trainval or test.")
    return val


def evaluate_breeds(data: str | Path, split: str = "test", model_dir: str | Path | None = None,
                    tta: bool = False) -> dict:
    """Breed metrics of the shipped breed model on every cat photo of ``split``."""
    files = ModelFiles.resolve(model_dir)
    if files.breeds is None:
        raise CatScannerError(f"No breed model in {files.folder}.")
    breeds_path = files.breeds
    clf = BreedClassifier(OrtModel(breeds_path))
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


def _position(box: tuple, size: tuple[int, int]) -> str:
    """Where a box's centre lies in the frame: a cell of the 3 x 3 grid, e.g. "top-left"."""
    cx, cy = (box[0] + box[2]) / 2 / size[0], (box[1] + box[3]) / 2 / size[1]
    col = ("left", "centre", "right")[min(2, int(cx * 3))]
    row = ("top", "middle", "bottom")[min(2, int(cy * 3))]
    return f"{row}-{col}"


def _shape(size: tuple[int, int]) -> str:
    w, h = size
    r = w / h
    names = {"1:1": 1.0, "4:3": 4 / 3, "3:4": 3 / 4, "16:9": 16 / 9, "9:16": 9 / 16, "2:1": 2.0, "3:1": 3.0}
    return min(names, key=lambda k: abs(np.log(names[k] / r)))


def scan_scenes(scanner: Scanner, scenes, desc: str) -> tuple[list[PhotoOutcome], list[dict]]:
    """Scan each scene (a :class:`~.scenes.Scene`, known cat boxes and breeds) end to end with the
    scanner; returns the photo outcomes and one row per true cat (found?, breed right?, shape, position, size)."""
    outcomes, cats = [], []
    for scene in progress_bar(scenes, desc=desc):
        r = scanner.scan(scene.image)
        true = [c.box for c in scene.cats]
        hits, extra = match([_box(c.box) for c in r.cats], [c.cat_probability for c in r.cats], true)
        right = []
        for c, h in zip(scene.cats, hits):
            ok = h >= 0 and bool(r.cats[h].breeds) and r.cats[h].breeds[0].breed == BREEDS[c.label]
            if h >= 0:
                right.append(ok)
            side = max(c.box[2] - c.box[0], c.box[3] - c.box[1]) / min(scene.image.size)
            cats.append({"found": h >= 0, "breed_right": ok if h >= 0 else None, "shape": _shape(scene.image.size),
                         "position": _position(c.box, scene.image.size),
                         "size": "15-30 % of the short side" if side < 0.3 else "30-60 %" if side < 0.6 else "60-100 %"})
        outcomes.append(PhotoOutcome(bool(true), len(true), r.cat_probability, r.is_cat,
                                     sum(h >= 0 for h in hits), extra, right))
    return outcomes, cats


def _box(b) -> tuple[float, float, float, float]:
    return (b.left, b.top, b.right, b.bottom)


def _rate_by(cats: list[dict], key: str) -> dict:
    groups: dict[str, list[bool]] = {}
    for c in cats:
        groups.setdefault(c[key], []).append(c["found"])
    return {k: {"cats": len(v), "found": round(float(np.mean(v)), 4)} for k, v in sorted(groups.items())}


def evaluate_detector(data: str | Path | None = None, model_dir: str | Path | None = None,
                      scenes: int = 800, threads: int | None = None) -> dict:
    """The whole-frame detector, end to end through the scanner, on data it was not fitted on.

    * ``scenes`` composites of the report split (Oxford test cats pasted into the report half of
      the cat-free COCO photos, with distractors; see :mod:`.scenes`): is-cat rate, cats found with
      their own box, extra boxes, top breed of the found cats, by shape, position and size;
    * Oxford test cats (recall) and dogs, and the cat-free COCO photos (false alarms; the fit
      half was seen in training and is reported apart);
    * the COCO photos with a labelled cat: box IoU;
    * calibration of ``cat_probability`` over all of these photos: ECE and reliability diagram.
    """
    from .scenes import Pools, make_scene, plain_items

    root = data_root(data)
    scanner = Scanner(model_dir, threads=threads)
    pools = Pools("report", root)
    scene_outcomes, cat_rows = scan_scenes(scanner, [make_scene(pools, i) for i in range(scenes)], "report scenes")
    sets = {"report scenes": summarize(scene_outcomes)}
    all_outcomes = list(scene_outcomes)
    plain = {"Oxford test cats": list(plain_items(pools, "cat")), "Oxford test dogs": list(plain_items(pools, "dog")),
             "COCO without a cat (report half)": list(plain_items(pools, "coco")),
             "COCO without a cat (fit half, seen in training)": list(plain_items(Pools("fit", root), "coco"))}
    for name, items in plain.items():
        outcomes, _ = scan_scenes(scanner, items, name)
        sets[name] = summarize(outcomes)
        if "fit half" not in name:
            all_outcomes += outcomes
    negatives = [sets[k] for k in ("Oxford test dogs", "COCO without a cat (report half)")]
    false_alarms = sum(s["false_alarms"] for s in negatives)
    n_negative = sum(s["photos"] for s in negatives)
    scenes_, cats = sets["report scenes"], sets["Oxford test cats"]
    # 95 % intervals of the photo-level rates (photos are independent draws; cats in one scene are not,
    # so the cats-found rate gets none)
    intervals = {"scene_photos_with_cat_called_cat": proportion_interval(scenes_["cat_photos_called_cat"],
                                                                         scenes_["photos_with_cat"]),
                 "oxford_test_cat_recall": proportion_interval(cats["cat_photos_called_cat"], cats["photos_with_cat"]),
                 "false_alarm_rate": proportion_interval(false_alarms, n_negative)}
    probs = [o.probability for o in all_outcomes]
    labels = [o.has_cat for o in all_outcomes]
    return {
        "model": str(scanner.models.detector),
        "detection": asdict(scanner.detector.params),
        "sets": sets,
        "report_scenes_by_shape": _rate_by(cat_rows, "shape"),
        "report_scenes_by_position": _rate_by(cat_rows, "position"),
        "report_scenes_by_size": _rate_by(cat_rows, "size"),
        "summary": {
            "scene_photos_with_cat_called_cat": sets["report scenes"]["is_cat_on_cat_photos"],
            "scene_cats_found": sets["report scenes"]["cats_found"],
            "scene_extra_boxes_per_photo": sets["report scenes"]["extra_boxes_per_photo"],
            "scene_found_cats_top_breed_right": sets["report scenes"]["breed_top1_of_found"],
            "oxford_test_cat_recall": sets["Oxford test cats"]["is_cat_on_cat_photos"],
            "false_alarms": false_alarms, "negatives": n_negative, "false_alarm_rate": false_alarms / n_negative,
            "intervals_95": intervals,
        },
        "calibration": {"photos": len(probs), "ece": expected_calibration_error_binary(probs, labels),
                        "reliability": reliability(probs, labels)},
        "wild_cats": "not measured: the shared data holds no wild-cat photos (imagenet-samples is missing)",
        "localization": coco_localization(root / "coco128", scanner),
    }


def plot_reliability(report: dict, path: Path) -> Path:
    """The reliability diagram of ``cat_probability`` (from :func:`evaluate_detector`) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = report["calibration"]["reliability"]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.plot([b["mean_probability"] for b in bins], [b["frequency"] for b in bins], "o-", label="Cat Scanner")
    for b in bins:
        ax.annotate(str(b["n"]), (b["mean_probability"], b["frequency"]), fontsize=7, xytext=(3, -10),
                    textcoords="offset points")
    ax.set(xlabel="cat_probability (mean in bin)", ylabel="share of photos with a cat", xlim=(0, 1), ylim=(0, 1),
           title=f"Reliability, {report['calibration']['photos']} photos: ECE {report['calibration']['ece']:.3f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def coco_localization(coco_root: str | Path, scanner: Scanner) -> list[dict]:
    """Best IoU between a found cat box and each labelled COCO cat, per photo with a cat."""
    out = []
    for photo in read_coco(coco_root):
        if not photo.cat_boxes:
            continue
        r = scanner.scan(photo.path)
        W, H = r.width, r.height
        for x, y, w, h in photo.cat_boxes:
            t = ((x - w / 2) * W, (y - h / 2) * H, (x + w / 2) * W, (y + h / 2) * H)
            best = max((iou(_box(c.box), t) for c in r.cats), default=0.0)
            out.append({"photo": photo.path.name, "cats_found_in_photo": len(r.cats), "iou": round(best, 3)})
    return out


# --------------------------------------------------------------------------- ImageNet weight check


def imagenet_dog_accuracy(data: str | Path, backbone: str, weights: str | None = None) -> dict:
    """Top-1 ImageNet accuracy of a backbone on the Oxford dogs whose breed is an ImageNet class
    (PyTorch; proves the loaded weights are real ImageNet weights)."""
    import torch

    from .backbones import backbone_spec, load_backbone

    spec = backbone_spec(backbone).preprocess
    model = load_backbone(backbone, weights)
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
