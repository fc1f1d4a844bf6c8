"""Fitting the whole-frame cat detector (``catscan fit-detector``) and exporting ``detector.onnx``.

Everything here reads the ``fit`` side of the data only (Oxford ``trainval`` cats and dogs, the
even half of the cat-free COCO photos, and scenes built from them — see :mod:`.scenes`):

1. cache the frozen backbone's features of the plain photos and of ``scenes`` composites;
2. train the head (since v0.10 three heads from three seeds, averaged) on the records of four fifths
   of the cat photos (:func:`split_by_cat`, :func:`.detection.train_heads`);
3. on the records of the other fifth (cats the head never saw) fit the box score (a logistic regression on each candidate's heat-map
   peak and the ImageNet class groups of its box) and choose the thresholds (:func:`choose_params`);
4. (``refit_all``) train the head again, the same way, on every record, and keep the score and
   thresholds of step 3 (the usual refit on all data once the settings are chosen);
5. export backbone + head + ImageNet outputs as one ONNX graph with dynamic height and width.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import CatScannerError
from ..progress import progress_bar
from ..runtime.contract import DETECTOR_OUTPUTS, DetectionParams, ModelMeta
from ..runtime.detector import (Candidate, box_features, kept_boxes, log_softmax, look_evidence, look_features,
                                reported_cats, to_look_at)
from ..runtime.preprocessing import Preprocess, preprocess_frame, preprocess_square
from .backbones import freeze_same_padding, load_backbone
from .detection import FINE_TAP_BLOCK, TAP_BLOCK, backbone_taps, Taps, WholeFrameDetectorNet, head_outputs, train_heads
from .export import export_onnx
from .metrics import PhotoOutcome, finds, match, summarize
from . import scenes as scenes_module
from .scenes import Pools, Scene, make_scene, plain_items, scene_by_key

BACKBONE = "efficientnet_lite0"
# the head trains by default on features of the whole photo at most this big (about v0.1's 224 x 224;
# fit_detector's train_pixels); the detector runs at fit_detector's run_pixels (v0.8: 75,000), its
# scores and thresholds chosen there
MAX_PIXELS = 50_000
SPEC = Preprocess(320, 1.0, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0), "bicubic", MAX_PIXELS, 32)
FALSE_ALARM_BUDGET = 0.005  # share of cat-free held-out photos that may be called "cat"
PEAK_THRESHOLD = 0.05  # heat-map peaks below this are not even candidates
# A box is a wild cat when wild cats hold this share of the ImageNet cat mass of its crop: the
# share that 0.6 % of the fit side's house cats reach (benchmarks/wild_share.py; no wild-cat photo
# is in the shared data, so only the cost on house cats can be measured).
WILD_SHARE = 0.9
# A photo without cat boxes shows a wild cat when ImageNet gives its whole frame this much wild-cat
# mass: above every cat-free photo of the fit side (the most, 0.475, giraffes that ImageNet, which has
# no giraffe class, calls leopard and cheetah).
WILD_MIN_MASS = 0.5
# A looked-at box is a wild cat only when its crop's heat-map peak (the head's evidence of a cat's
# centre) reaches this: what 99 % of the fit side's house cats reach (the 1st percentile, 0.355 with
# v0.5, 0.339 with v0.6: 0.35 until v0.8; 0.579 with v0.9's head, whose peaks are higher: 0.55;
# `python benchmarks/wild_share.py --split trainval`). Wild cats are cat-shaped; a giraffe's coat,
# which ImageNet calls leopard, is not (a report-side COCO giraffe crop: 0.16 with v0.5, 0.43 with
# v0.9, which at 0.35 called that photo "wild cat: leopard"). v0.10's three heads: 0.533, hence 0.5.
# The whole-photo wild rule asks the same of the first pass's heat map (1st percentile of the 1,056
# trainval house cats 0.71 with v0.6, 0.588 with v0.9, 0.533 with v0.10); that giraffe photo 0.15
# (v0.6), 0.31 (v0.9).
WILD_MIN_PEAK = 0.5


@dataclass(frozen=True)
class SecondLook:
    """How the detector looks again at its likeliest boxes (see ``DetectionParams.look_*``):
    the ``count`` most probable boxes scoring at least ``floor``, cut out as squares of ``margin``
    x their longer side and resized to ``size`` pixels."""

    size: int = 192
    count: int = 3
    floor: float = 0.1
    margin: float = 1.15
    # a box whose crop would cover this share of the photo reuses the first pass (0: never): where the
    # first pass (75,000 pixels since v0.8) shows the crop's part of the photo at >= 25,000 of the look's
    # 36,864 pixels (v0.9; v0.7 and v0.8: 0.5)
    reuse: float = 0.3333

    def __post_init__(self) -> None:
        if self.size <= 0 or self.size % 32:
            raise ValueError(f"the second look's crop side must be a positive multiple of 32 (the graph's "
                             f"stride; its padding is fixed at export for such sizes), got {self.size}")
        if self.count < 1 or not 0.0 <= self.floor <= 1.0 or self.margin < 1.0:
            raise ValueError(f"second look: count >= 1, floor in 0-1 and margin >= 1 (got {self})")


def _export_taps(path: Path) -> Path:
    net = freeze_same_padding(load_backbone(BACKBONE), 320)  # the same constant padding for every multiple of 32
    torch.onnx.export(Taps(net).eval(), (torch.zeros(1, 3, 320, 320),), str(path), input_names=["image"],
                      output_names=["c3", "c4", "c5"], dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    return path


@contextmanager
def _taps_session(threads: int):
    """An ONNX Runtime session of the frozen backbone's feature taps (c3, c4, c5), any input size."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        yield ort.InferenceSession(str(_export_taps(Path(tmp) / "taps.onnx")), opts, providers=["CPUExecutionProvider"])


def _features(session, image, spec: Preprocess) -> dict:
    """The backbone features (float16) of one photo resized exactly as the runtime's first pass does."""
    x = preprocess_frame(image, spec)[None]
    c3, c4, c5 = session.run(None, {"image": x})
    return {"in_size": (x.shape[3], x.shape[2]), "c3": c3[0].astype(np.float16), "c4": c4[0].astype(np.float16),
            "c5": c5[0].astype(np.float16)}


def feature_records(pools: Pools, n_scenes: int, threads: int, seed: int = 0, cache: Path | None = None,
                    spec: Preprocess = SPEC, turned: bool = False) -> list[dict]:
    """Backbone features (float16) of the split's plain photos and ``n_scenes`` composites, each
    resized as ``spec`` says (``turned``: and of the cat and dog photos turned on their side,
    ``scenes.turn_of``; ``pools.turned_dogs`` > 0: and of the dog photos turned); with ``cache`` (a
    folder of your own: the files are pickles), kept in a file there named by what they come from (the
    photos, the scene count and seed, the preprocessing, the backbone and this code) and read back by
    later runs."""
    if cache is not None:
        # the pools in order (scenes pick photos by position), the scene recipe and the feature code
        names = "|".join(str(it) for kind in ("cats", "dogs", "coco") for it in getattr(pools, kind))
        code = "".join(inspect.getsource(f) for f in (scenes_module, feature_records, _features, backbone_taps))
        taps = f"{FINE_TAP_BLOCK}|{TAP_BLOCK}"
        turns = f"{turned}|{pools.turned_dogs}"
        key = hashlib.sha1(f"{names}|{n_scenes}|{seed}|{spec.to_dict()}|{BACKBONE}|{taps}|{turns}|{code}".encode()).hexdigest()[:16]
        path = Path(cache) / f"features_{pools.split}_{n_scenes}_{key}.pkl"
        if path.is_file():
            print(f"features read from {path}", flush=True)
            with open(path, "rb") as f:
                return pickle.load(f)
        records = feature_records(pools, n_scenes, threads, seed, spec=spec, turned=turned)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as f:
            pickle.dump(records, f, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(path)
        return records

    def record(session, scene: Scene, kind: str) -> dict:
        W, H = scene.image.size
        return dict(key=scene.key, kind=kind, scene_size=(W, H),
                    cats=[(c.box[0] / W, c.box[1] / H, c.box[2] / W, c.box[3] / H) for c in scene.cats],
                    breeds=[c.label for c in scene.cats], names=[c.name for c in scene.cats],
                    **_features(session, scene.image, spec))

    where = f"at {spec.max_pixels:,} pixels"
    with _taps_session(threads) as session:
        kinds = ("cat", "dog", "coco")
        if turned or pools.turned_dogs:
            kinds += ("turned_cat", "turned_dog") if turned else ("turned_dog",)
        plain = [(s, k) for k in kinds for s in plain_items(pools, k)]
        records = [record(session, s, k) for s, k in progress_bar(plain, desc=f"features of {pools.split} photos {where}")]
        records += [record(session, make_scene(pools, i, seed), "scene")
                    for i in progress_bar(range(n_scenes), desc=f"features of {pools.split} scenes {where}")]
    return records


def records_at(records: list[dict], pools: Pools, spec: Preprocess, threads: int) -> list[dict]:
    """The records with their backbone features computed again from their photos (rebuilt from
    ``pools``) as ``spec`` resizes them: the first pass at another size than the head was trained at."""
    with _taps_session(threads) as session:
        return [{**r, **_features(session, scene_by_key(pools, r["key"]).image, spec)}
                for r in progress_bar(records, desc=f"features of {len(records)} photos at {spec.max_pixels:,} pixels")]


def _outcomes(records: list[dict], candidates_per_record: list[list], params: DetectionParams) -> list[PhotoOutcome]:
    """Photo outcomes of the runtime's decision (house cats only) given each record's candidates."""
    res = []
    for r, found in zip(records, candidates_per_record):
        SW, SH = r["scene_size"]
        best = max((c.probability for c in found), default=0.0)
        cats = reported_cats(found, best, params)
        true = [(l * SW, t * SH, rr * SW, b * SH) for l, t, rr, b in r["cats"]]
        hits, extra = match([c.box for c in cats], [c.probability for c in cats], true)
        res.append(PhotoOutcome(bool(true), len(true), best, bool(cats), sum(h >= 0 for h in hits), extra))
    return res


def _labelled_candidates(records: list[dict], outputs: list[dict], params: DetectionParams):
    """For each record: its candidate boxes (scene pixels), score features, whether each box finds
    one of the record's cats, and each box's ImageNet logits."""
    rows = []
    for r, out in zip(records, outputs):
        W, H = r["in_size"]
        SW, SH = r["scene_size"]
        boxes, features, logits = box_features(out, 0, params)
        boxes = boxes * np.array([SW / W, SH / H, SW / W, SH / H])
        true = [(l * SW, t * SH, rr * SW, b * SH) for l, t, rr, b in r["cats"]]
        labels = np.array([any(finds(tuple(b), t) for t in true) for b in boxes], dtype=bool)
        rows.append((boxes, features, labels, logits))
    return rows


def _decide(records, rows, probs_per_record, params) -> list[PhotoOutcome]:
    found = []
    for (boxes, *_), probs in zip(rows, probs_per_record):
        keep = kept_boxes(boxes, probs, params)
        found.append([Candidate(tuple(boxes[k]), float(probs[k]), None) for k in keep])
    return _outcomes(records, found, params)


def _require_both_classes(rows: list[tuple], k: int, what: str) -> None:
    """Refuse candidate rows (labels third) whose training part of a k-fold split by photo
    (photo i in fold i % k) holds boxes of only one kind: no logistic regression can be fitted."""
    for f in range(k):
        y = np.concatenate([r[2] for i, r in enumerate(rows) if i % k != f] or [np.zeros(0, bool)])
        if y.all() or not y.any():
            raise CatScannerError(
                f"The head gives too few candidate boxes on {what} ({int(y.sum())} finding a cat, "
                f"{int((~y).sum())} not, in one fold): train it longer or on more photos.")


def _base_params(box_classifier: tuple[tuple[float, ...], float] | None = None, stride: int = 16) -> DetectionParams:
    weights, bias = box_classifier if box_classifier else (None, 0.0)
    return DetectionParams(stride=stride, peak_threshold=PEAK_THRESHOLD, coef=(0.0,) * (5 if weights is None else 6),
                           wild_share=WILD_SHARE, wild_min_mass=WILD_MIN_MASS, wild_min_peak=WILD_MIN_PEAK,
                           intercept=0.0, cat_threshold=0.5, box_threshold=0.5,
                           box_classifier=weights, box_classifier_intercept=bias)


def fit_box_classifier(records: list[dict], outputs: list[dict], stride: int = 16
                       ) -> tuple[tuple[tuple[float, ...], float], dict]:
    """A linear cat-or-not classifier on the 1,000 ImageNet log-probabilities of each candidate box
    of ``records`` (the head's training photos; the backbone it reads was never trained on them),
    labelled by whether the box finds a cat. Its L2 strength is chosen by 3-fold cross-validation
    grouped by photo (log-loss). Returns ((weights, intercept), report)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    rows = _labelled_candidates(records, outputs, _base_params(stride=stride))
    X = log_softmax(np.concatenate([logits for *_, logits in rows]))
    y = np.concatenate([labels for _, _, labels, _ in rows])
    folds = np.concatenate([np.full(len(labels), g % 3) for g, (_, _, labels, _) in enumerate(rows)])
    _require_both_classes(rows, 3, f"its {len(records)} training photos to fit the box classifier")
    scores = {}
    for C in (0.003, 0.03, 0.3):
        oof = np.zeros(len(y))
        for f in range(3):
            lr = LogisticRegression(C=C, max_iter=3000).fit(X[folds != f], y[folds != f])
            oof[folds == f] = lr.predict_proba(X[folds == f])[:, 1]
        scores[C] = (log_loss(y, oof), roc_auc_score(y, oof))
        print(f"box classifier C={C}: out-of-fold log-loss {scores[C][0]:.4f}, AUC {scores[C][1]:.4f}", flush=True)
    C = min(scores, key=lambda c: scores[c][0])
    lr = LogisticRegression(C=C, max_iter=3000).fit(X, y)
    report = {"C": C, "candidates": int(len(y)), "finding_a_cat": int(y.sum()),
              "cv": {str(c): {"log_loss": round(v[0], 4), "auc": round(v[1], 4)} for c, v in scores.items()}}
    return (tuple(float(w) for w in lr.coef_[0]), float(lr.intercept_[0])), report


def _out_of_fold(rows: list[tuple], folds: np.ndarray) -> list[np.ndarray]:
    """Out-of-fold probabilities of a logistic regression on the rows' features (second) and
    labels (third), the folds by photo."""
    from sklearn.linear_model import LogisticRegression

    oof: list[np.ndarray] = [np.zeros(0)] * len(rows)
    for f in range(int(folds.max()) + 1):
        X = np.concatenate([rows[i][1] for i in range(len(rows)) if folds[i] != f])
        y = np.concatenate([rows[i][2] for i in range(len(rows)) if folds[i] != f])
        lr = LogisticRegression(C=1.0, max_iter=5000).fit(X, y)
        for i in np.nonzero(folds == f)[0]:
            oof[i] = lr.predict_proba(rows[i][1])[:, 1] if len(rows[i][1]) else np.zeros(0)
    return oof


def _fit_score(rows: list[tuple]) -> tuple[tuple[float, ...], float]:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0, max_iter=5000).fit(np.concatenate([r[1] for r in rows]),
                                                      np.concatenate([r[2] for r in rows]))
    return tuple(float(c) for c in lr.coef_[0]), float(lr.intercept_[0])


def _looked_at(records: list[dict], outputs: list[dict], rows: list[tuple], probs: list[np.ndarray],
               look: SecondLook, crop_outputs: Callable[[dict, np.ndarray], dict[str, np.ndarray]]) -> list[tuple]:
    """The rows of the boxes the second look examines (chosen by ``probs``, the first score),
    with the second look's features and the ImageNet logits of what it saw (their crops, or the
    first pass's ``outputs`` where the runtime reuses them: ``runtime.detector.look_evidence``)."""
    params = replace(_base_params(), look_margin=look.margin, look_reuse=look.reuse)  # suppression, reuse
    out = []
    for r, first, (boxes, features, labels, _), p in progress_bar(list(zip(records, outputs, rows, probs)),
                                                                   desc="second look at the held-out photos' boxes"):
        keep = to_look_at(p, kept_boxes(boxes, p, params), look.floor, look.count)
        if not keep:
            out.append((np.zeros((0, 4)), np.zeros((0, features.shape[1] + 5)), np.zeros(0, bool), np.zeros((0, 1000))))
            continue
        logits, peaks = look_evidence(first, 0, boxes[keep], tuple(r["scene_size"]), params,
                                      lambda b: crop_outputs(r, b))
        out.append((boxes[keep], look_features(features[keep], logits, peaks), labels[keep], logits))
    return out


def choose_params(records: list[dict], outputs: list[dict],
                  box_classifier: tuple[tuple[float, ...], float] | None = None, look: SecondLook | None = None,
                  crop_outputs: Callable[[dict, np.ndarray], dict[str, np.ndarray]] | None = None,
                  stride: int = 16) -> tuple[DetectionParams, dict]:
    """The box score and the thresholds, on held-out records (``outputs``: the graph's outputs on them).

    The score is a logistic regression on each candidate's features (its heat-map peak, its box's
    ImageNet class groups and, when given, the box classifier's logit), labelled by whether the box
    finds a cat: calibrated by construction. With a second ``look``, the boxes it examines (chosen
    by the first score, out of fold) get a second score on those features plus their crops' (the
    graph's outputs on the crops: ``crop_outputs(record, boxes)``), and the thresholds apply to it.
    Out-of-fold probabilities (5 folds by photo) choose the thresholds: the photo threshold with at
    most 0.5 % false-alarm photos among the cat-free ones, then the box threshold with the most cats
    found minus extra boxes."""
    base = _base_params(box_classifier, stride)
    rows = _labelled_candidates(records, outputs, base)
    folds = np.arange(len(records)) % 5
    _require_both_classes(rows, 5, f"the {len(records)} held-out photos to fit the box score")
    oof = _out_of_fold(rows, folds)
    first_coef, first_intercept = _fit_score(rows)
    first_candidates, first_found = int(sum(len(r[2]) for r in rows)), int(sum(r[2].sum() for r in rows))
    none_probability = 0.0
    if look is not None:
        if crop_outputs is None:
            raise ValueError("a second look needs crop_outputs(record, boxes): the graph's outputs on the crops")
        rows = _looked_at(records, outputs, rows, oof, look, crop_outputs)
        _require_both_classes(rows, 5, f"the boxes the second look examines in {len(records)} held-out photos")
        oof = _out_of_fold(rows, folds)
        unseen = [bool(r["cats"]) for r, row in zip(records, rows) if not len(row[2])]
        none_probability = round(float(np.mean(unseen)), 4) if unseen else 0.0
    table = threshold_table(records, rows, oof, base)
    thr, thr2, held_out, budget_met = pick_thresholds(table)
    if not budget_met:
        print(f"warning: no threshold keeps false alarms within {FALSE_ALARM_BUDGET:.1%} of the cat-free held-out "
              f"photos; the fewest is {held_out['false_alarm_photos']:.1%} (at {thr}): the head separates cats "
              "from the other photos too poorly", flush=True)
    params = replace(base, coef=first_coef, intercept=first_intercept, cat_threshold=thr, box_threshold=thr2)
    if look is not None:
        look_coef, look_intercept = _fit_score(rows)
        params = replace(params, look_size=look.size, look_count=look.count, look_floor=look.floor,
                         look_margin=look.margin, look_reuse=look.reuse, look_coef=look_coef,
                         look_intercept=look_intercept,
                         look_none_probability=none_probability)
    keys = ("is_cat_on_cat_photos", "cats_found", "extra_boxes_per_photo", "false_alarm_photos")
    return params, {"thresholds": [thr, thr2], "false_alarm_budget_met": budget_met,
                    "held_out_out_of_fold": held_out, "held_out_photos": len(records),
                    "candidates": first_candidates, "candidates_finding_a_cat": first_found,
                    "looked_at": int(sum(len(r[2]) for r in rows)) if look is not None else None,
                    "photos_with_nothing_looked_at": None if look is None else sum(not len(r[2]) for r in rows),
                    "threshold_table": [[t, t2, *(s[k] for k in keys)] for t, t2, s in table]}


def threshold_table(records: list[dict], rows: list[tuple], probs: list[np.ndarray], base: DetectionParams
                    ) -> list[tuple[float, float, dict]]:
    """(photo threshold, box threshold, summary of the decision) over the grid the fit chooses from:
    photo thresholds 0.30-0.95, box thresholds 0.10 up to the photo threshold; ``rows`` hold each
    record's boxes first, ``probs`` their probabilities."""
    table = []
    for thr in np.round(np.arange(0.30, 0.96, 0.025), 3):
        for thr2 in np.round(np.arange(0.10, thr + 1e-9, 0.05), 3):
            p = replace(base, cat_threshold=float(thr), box_threshold=float(thr2))
            table.append((float(thr), float(thr2), summarize(_decide(records, rows, probs, p))))
    return table


def pick_thresholds(table: list[tuple[float, float, dict]]) -> tuple[float, float, dict, bool]:
    """(photo threshold, box threshold, their held-out summary, whether the false-alarm budget is met)
    from rows (photo threshold, box threshold, summary): among the rows within the budget, or else
    among those with the fewest false alarms, the most cats found minus extra boxes."""
    if any(t[2]["false_alarm_photos"] is None for t in table):
        raise CatScannerError("The held-out photos hold no cat-free photo, so false alarms cannot be measured: "
                              "fit on more photos.")
    ok = [t for t in table if t[2]["false_alarm_photos"] <= FALSE_ALARM_BUDGET]
    if not ok:
        fewest = min(t[2]["false_alarm_photos"] for t in table)
        ok = [t for t in table if t[2]["false_alarm_photos"] == fewest]
    thr, thr2, summary = max(ok, key=lambda t: (round(t[2]["cats_found"] - t[2]["extra_boxes_per_photo"], 3),
                                                t[2]["is_cat_on_cat_photos"]))
    return thr, thr2, summary, summary["false_alarm_photos"] <= FALSE_ALARM_BUDGET


def held_out_cat(name: str, held_share: int = 5) -> bool:
    """Whether :func:`split_by_cat` holds out the cat photo ``name``: its name hashes to 0 mod ``held_share``."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % held_share == 0


def split_by_cat(records: list[dict], held_share: int = 5) -> tuple[list[dict], list[dict]]:
    """(train, held-out) with no cat photo on both sides: the cats whose name hashes to 0 mod
    ``held_share`` are held out with every record that shows them; records that mix held-out and
    training cats are dropped; cat-free records go to the held-out side one in ``held_share``.

    Choosing thresholds on cats the head was trained on overstates what it does on new cats."""
    train, held_out = [], []
    for i, r in enumerate(records):
        flags = {held_out_cat(n, held_share) for n in r["names"]}
        if not flags:
            (held_out if i % held_share == 0 else train).append(r)
        elif flags == {True}:
            held_out.append(r)
        elif flags == {False}:
            train.append(r)
    return train, held_out


def crop_outputs_of(head: nn.Module, pools: Pools, look: SecondLook) -> Callable[[dict, np.ndarray], dict[str, np.ndarray]]:
    """``crop_outputs(record, boxes)``: the graph (backbone + ``head``, in PyTorch) on ``look``'s crops of boxes (scene pixels) of the record's photo, rebuilt from ``pools``."""
    net = WholeFrameDetectorNet(load_backbone(BACKBONE), head).eval()

    @torch.no_grad()
    def crop_outputs(record: dict, boxes: np.ndarray) -> dict[str, np.ndarray]:
        img = scene_by_key(pools, record["key"]).image
        x = np.stack([preprocess_square(img, tuple(b), look.size, SPEC, look.margin)
                      for b in boxes])
        return dict(zip(DETECTOR_OUTPUTS, (t.numpy() for t in net(torch.from_numpy(x)))))
    return crop_outputs


def fit_detector(data: str | Path | None, out: Path, n_scenes: int = 8000, epochs: int = 10,
                 threads: int = 2, seed: int = 0, refit_all: bool = True, max_photos: int = 0,
                 box_classifier: bool = False, cache: Path | None = None, dropout: float = 0.0,
                 look: SecondLook | None = SecondLook(), stride: int = 16,
                 first_head: Path | None = None, fine_input: bool = False, run_pixels: int = 75_000,
                 train_pixels: int = MAX_PIXELS, heads: int = 3, turned: bool = False,
                 turned_dogs: float = 0.0) -> dict:
    """Fit the whole-frame detector on the ``fit`` data and export it to ``out``; returns the fit report.
    The defaults are the shipped detector's recipe.

    ``max_photos`` > 0 draws on only that many photos of each kind (cats, dogs, COCO): quick checks.
    ``box_classifier``: verify candidate boxes with a linear classifier on their ImageNet
    log-probabilities too (:func:`fit_box_classifier`; measured worse on held-out cats, see the
    model card, so off by default). ``cache``: folder for the backbone features. ``dropout``: of the
    head's input features in training (:func:`.detection.train_head`). ``look``: the second look at
    the likeliest boxes (None: none). ``stride``: of the head's heat map (8 or 16). ``fine_input``: a
    stride-16 head also reads the stride-8 features (:class:`.detection.CatHead`). ``run_pixels``: the
    first pass's size at run time; ``train_pixels``: the size of the photos whose features (cached)
    the head is trained on. When they differ, the scores and thresholds are chosen on the held-out
    photos' features computed again at ``run_pixels``, as the runtime will see them. ``heads`` > 1:
    that many heads trained from seeds ``seed``, ``seed`` + 1, ... and read as their average
    (:class:`.detection.HeadEnsemble`). ``turned``: the cat and dog photos are also trained on turned
    on their side (``scenes.turn_of``), and the held-out fifth's turned photos take part in the choice.
    ``turned_dogs`` > 0: that share of the dog photos in the scenes (backgrounds and distractors) is
    turned on their side, and each dog photo is trained on turned as well (cat-free)."""
    torch.set_num_threads(threads)
    t0 = time.time()
    pools = Pools("fit", data, turned_dogs=turned_dogs)
    if max_photos:
        for kind in ("cats", "dogs", "coco"):
            items = getattr(pools, kind)
            setattr(pools, kind, items[:: max(1, len(items) // max_photos)][:max_photos])
    records = feature_records(pools, n_scenes, threads, seed, cache, replace(SPEC, max_pixels=train_pixels), turned)
    train, held = split_by_cat(records)
    head = train_heads(train, heads, seed, epochs=epochs, progress=progress_bar, dropout=dropout, stride=stride,
                       fine_input=fine_input)
    classifier = load_backbone(BACKBONE).classifier
    verifier, verifier_report = fit_box_classifier(train, head_outputs(head, classifier, train), stride) \
        if box_classifier else (None, None)
    crop_outputs = crop_outputs_of(head, pools, look) if look is not None else None
    spec = replace(SPEC, max_pixels=run_pixels)
    held_run = held if run_pixels == train_pixels else records_at(held, pools, spec, threads)
    params, report = choose_params(held_run, head_outputs(head, classifier, held_run), verifier, look, crop_outputs, stride)
    report["box_classifier"] = verifier_report
    print(f"chosen on {len(held)} held-out fit photos: {report['held_out_out_of_fold']}", flush=True)
    settings = {"scenes": n_scenes, "epochs": epochs, "seed": seed, "dropout": dropout, "max_pixels": train_pixels, "run_pixels": run_pixels,
                "stride": stride, "fine_input": fine_input, "heads": heads, "turned": turned, "turned_dogs": turned_dogs, "second_look": None if look is None else asdict(look)}
    if refit_all:
        if first_head is not None:
            export_detector(head, params, first_head, spec=spec, details=
                            {"fit": {**report, **settings, "fit_photos": len(train), "refit_all": False,
                                     "seconds": round(time.time() - t0)}})
            print(f"wrote the four-fifths head to {first_head}", flush=True)
        head = train_heads(train + held, heads, seed, epochs=epochs, progress=progress_bar, dropout=dropout,
                           stride=stride, fine_input=fine_input)
    report.update({"fit_photos": len(train) + (len(held) if refit_all else 0), "refit_all": refit_all,
                   **settings, "seconds": round(time.time() - t0)})
    export_detector(head, params, out, {"fit": report}, spec)
    return report


def export_detector(head: nn.Module, params: DetectionParams, out: Path, details: dict | None = None,
                    spec: Preprocess = SPEC) -> Path:
    """Backbone + head + ImageNet outputs as one ONNX graph with dynamic height and width; ``spec``:
    the preprocessing stored with it (the first pass's size)."""
    net = WholeFrameDetectorNet(load_backbone(BACKBONE), head.eval())
    meta = ModelMeta("detector", BACKBONE, spec, detection=params, details={"head": head.config, **(details or {})})
    return export_onnx(net, meta, out, DETECTOR_OUTPUTS, dynamic_size=True)
