"""Fitting the whole-frame cat detector (``catscan fit-detector``) and exporting ``detector.onnx``.

Everything here reads the ``fit`` side of the data only (Oxford ``trainval`` cats and dogs, the
even half of the cat-free COCO photos, and scenes built from them — see :mod:`.scenes`):

1. cache the frozen backbone's features of the plain photos and of ``scenes`` composites;
2. train the head on the records of four fifths of the cat photos (:func:`split_by_cat`,
   :func:`.detection.train_head`);
3. on the records of the other fifth (cats the head never saw) fit the box score (a logistic regression on each candidate's heat-map
   peak and the ImageNet class groups of its box) and choose the thresholds (:func:`choose_params`);
4. (``refit_all``) train the head again, the same way, on every record, and keep the score and
   thresholds of step 3 (the usual refit on all data once the settings are chosen);
5. export backbone + head + ImageNet outputs as one ONNX graph with dynamic height and width.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import CatScannerError
from ..progress import progress_bar
from ..runtime.contract import DETECTOR_OUTPUTS, DetectionParams, ModelMeta
from ..runtime.detector import Candidate, box_features, suppress
from ..runtime.imaging import Preprocess, frame_size, normalize
from .backbones import freeze_same_padding, load_backbone
from .detection import STRIDE, CatHead, Taps, WholeFrameDetectorNet, head_outputs, train_head
from .export import export_onnx
from .metrics import PhotoOutcome, finds, match, summarize
from .scenes import Pools, Scene, make_scene, plain_items

BACKBONE = "efficientnet_lite0"
MAX_PIXELS = 100_000  # the detector's input: the whole photo at most this big (about 2x today's 224 x 224)
SPEC = Preprocess(320, 1.0, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0), "bicubic", MAX_PIXELS, 32)
FALSE_ALARM_BUDGET = 0.005  # share of cat-free held-out photos that may be called "cat"
PEAK_THRESHOLD = 0.05  # heat-map peaks below this are not even candidates


def _export_taps(path: Path) -> Path:
    net = freeze_same_padding(load_backbone(BACKBONE), 320)  # the same constant padding for every multiple of 32
    torch.onnx.export(Taps(net).eval(), (torch.zeros(1, 3, 320, 320),), str(path), input_names=["image"],
                      output_names=["c4", "c5"], dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    return path


def feature_records(pools: Pools, n_scenes: int, threads: int, seed: int = 0) -> list[dict]:
    """Cached backbone features (float16) of the split's plain photos and ``n_scenes`` composites."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(_export_taps(Path(tmp) / "taps.onnx")), opts,
                                       providers=["CPUExecutionProvider"])

        def record(scene: Scene, kind: str) -> dict:
            W, H = scene.image.size
            size = frame_size(W, H, SPEC.max_pixels, SPEC.multiple)
            x = normalize(scene.image.resize(size, Image.Resampling.BICUBIC), SPEC)[None]
            c4, c5 = session.run(None, {"image": x})
            return dict(key=scene.key, kind=kind, in_size=size, scene_size=(W, H),
                        cats=[(c.box[0] / W, c.box[1] / H, c.box[2] / W, c.box[3] / H) for c in scene.cats],
                        breeds=[c.label for c in scene.cats], names=[c.name for c in scene.cats],
                        c4=c4[0].astype(np.float16), c5=c5[0].astype(np.float16))

        plain = [(s, k) for k in ("cat", "dog", "coco") for s in plain_items(pools, k)]
        records = [record(s, k) for s, k in progress_bar(plain, desc=f"features of {pools.split} photos")]
        records += [record(make_scene(pools, i, seed), "scene")
                    for i in progress_bar(range(n_scenes), desc=f"features of {pools.split} scenes")]
    return records


def _outcomes(records: list[dict], candidates_per_record: list[list], params: DetectionParams) -> list[PhotoOutcome]:
    """Photo outcomes of the runtime's decision (house cats only) given each record's candidates."""
    res = []
    for r, found in zip(records, candidates_per_record):
        SW, SH = r["scene_size"]
        best = max((c.probability for c in found), default=0.0)
        cats = [c for c in found if c.probability >= params.box_threshold] if best >= params.cat_threshold else []
        true = [(l * SW, t * SH, rr * SW, b * SH) for l, t, rr, b in r["cats"]]
        hits, extra = match([c.box for c in cats], [c.probability for c in cats], true)
        res.append(PhotoOutcome(bool(true), len(true), best, bool(cats), sum(h >= 0 for h in hits), extra))
    return res


def _labelled_candidates(records: list[dict], outputs: list[dict], params: DetectionParams):
    """For each record: its candidate boxes (scene pixels), score features, and whether each box
    finds one of the record's cats."""
    rows = []
    for r, out in zip(records, outputs):
        W, H = r["in_size"]
        SW, SH = r["scene_size"]
        boxes, features, _ = box_features(out, 0, params)
        boxes = boxes * np.array([SW / W, SH / H, SW / W, SH / H])
        true = [(l * SW, t * SH, rr * SW, b * SH) for l, t, rr, b in r["cats"]]
        labels = np.array([any(finds(tuple(b), t) for t in true) for b in boxes], dtype=bool)
        rows.append((boxes, features, labels))
    return rows


def _decide(records, rows, probs_per_record, params) -> list[PhotoOutcome]:
    found = []
    for (boxes, _, _), probs in zip(rows, probs_per_record):
        keep = suppress(boxes, probs, params.nms_iou, params.nms_contained)[: params.max_cats] if len(boxes) else []
        found.append([Candidate(tuple(boxes[k]), float(probs[k]), None) for k in keep])
    return _outcomes(records, found, params)


def choose_params(records: list[dict], outputs: list[dict]) -> tuple[DetectionParams, dict]:
    """The box score and the thresholds, on held-out records (``outputs``: the graph's outputs on them).

    The score is a logistic regression on each candidate's features (its heat-map peak and its
    box's ImageNet class groups), labelled by whether the box finds a cat: calibrated by
    construction. Its out-of-fold probabilities (5 folds by photo) choose the thresholds: the
    photo threshold with at most 0.5 % false-alarm photos among the cat-free ones, then the box
    threshold with the most cats found minus extra boxes."""
    from sklearn.linear_model import LogisticRegression

    base = DetectionParams(stride=STRIDE, peak_threshold=PEAK_THRESHOLD, coef=(0.0,) * 5, intercept=0.0,
                           cat_threshold=0.5, box_threshold=0.5)
    rows = _labelled_candidates(records, outputs, base)
    folds = np.arange(len(records)) % 5
    for f in range(5):
        y = np.concatenate([rows[i][2] for i in range(len(rows)) if folds[i] != f] or [np.zeros(0, bool)])
        if y.all() or not y.any():
            raise CatScannerError(
                f"The head gives too few candidate boxes on the {len(records)} held-out photos to fit the box "
                f"score ({int(y.sum())} finding a cat, {int((~y).sum())} not, in one fold): train it longer "
                "or on more photos.")
    oof: list[np.ndarray] = [np.zeros(0)] * len(records)
    for f in range(5):
        X = np.concatenate([rows[i][1] for i in range(len(rows)) if folds[i] != f])
        y = np.concatenate([rows[i][2] for i in range(len(rows)) if folds[i] != f])
        lr = LogisticRegression(C=1.0, max_iter=5000).fit(X, y)
        for i in np.nonzero(folds == f)[0]:
            oof[i] = lr.predict_proba(rows[i][1])[:, 1] if len(rows[i][1]) else np.zeros(0)
    table = []
    for thr in np.round(np.arange(0.30, 0.96, 0.025), 3):
        for thr2 in np.round(np.arange(0.10, thr + 1e-9, 0.05), 3):
            p = replace(base, cat_threshold=float(thr), box_threshold=float(thr2))
            table.append((float(thr), float(thr2), summarize(_decide(records, rows, oof, p))))
    ok = [t for t in table if t[2]["false_alarm_photos"] <= FALSE_ALARM_BUDGET] or table
    thr, thr2, held_out = max(ok, key=lambda t: (round(t[2]["cats_found"] - t[2]["extra_boxes_per_photo"], 3),
                                                 t[2]["is_cat_on_cat_photos"]))
    X = np.concatenate([r[1] for r in rows])
    y = np.concatenate([r[2] for r in rows])
    lr = LogisticRegression(C=1.0, max_iter=5000).fit(X, y)
    params = replace(base, coef=tuple(float(c) for c in lr.coef_[0]), intercept=float(lr.intercept_[0]),
                     cat_threshold=thr, box_threshold=thr2)
    keys = ("is_cat_on_cat_photos", "cats_found", "extra_boxes_per_photo", "false_alarm_photos")
    return params, {"thresholds": [thr, thr2], "held_out_out_of_fold": held_out, "held_out_photos": len(records),
                    "candidates": int(len(y)), "candidates_finding_a_cat": int(y.sum()),
                    "threshold_table": [[t, t2, *(s[k] for k in keys)] for t, t2, s in table]}


def split_by_cat(records: list[dict], held_share: int = 5) -> tuple[list[dict], list[dict]]:
    """(train, held-out) with no cat photo on both sides: the cats whose name hashes to 0 mod
    ``held_share`` are held out with every record that shows them; records that mix held-out and
    training cats are dropped; cat-free records go to the held-out side one in ``held_share``.

    Choosing thresholds on cats the head was trained on overstates what it does on new cats."""
    def held(name: str) -> bool:
        return int(hashlib.sha1(name.encode()).hexdigest(), 16) % held_share == 0

    train, held_out = [], []
    for i, r in enumerate(records):
        flags = {held(n) for n in r["names"]}
        if not flags:
            (held_out if i % held_share == 0 else train).append(r)
        elif flags == {True}:
            held_out.append(r)
        elif flags == {False}:
            train.append(r)
    return train, held_out


def fit_detector(data: str | Path | None, out: Path, n_scenes: int = 4000, epochs: int = 6,
                 threads: int = 2, seed: int = 0, refit_all: bool = False, max_photos: int = 0) -> dict:
    """Fit the whole-frame detector on the ``fit`` data and export it to ``out``; returns the fit report.

    ``max_photos`` > 0 draws on only that many photos of each kind (cats, dogs, COCO): quick checks."""
    torch.set_num_threads(threads)
    t0 = time.time()
    pools = Pools("fit", data)
    if max_photos:
        for kind in ("cats", "dogs", "coco"):
            items = getattr(pools, kind)
            setattr(pools, kind, items[:: max(1, len(items) // max_photos)][:max_photos])
    records = feature_records(pools, n_scenes, threads, seed)
    train, held = split_by_cat(records)
    head = train_head(train, epochs=epochs, seed=seed, progress=progress_bar)
    classifier = load_backbone(BACKBONE).classifier
    params, report = choose_params(held, head_outputs(head, classifier, held))
    print(f"chosen on {len(held)} held-out fit photos: {report['held_out_out_of_fold']}", flush=True)
    if refit_all:
        head = train_head(train + held, epochs=epochs, seed=seed, progress=progress_bar)
    report.update({"fit_photos": len(train) + (len(held) if refit_all else 0), "refit_all": refit_all,
                   "scenes": n_scenes, "epochs": epochs, "seed": seed, "max_pixels": MAX_PIXELS,
                   "seconds": round(time.time() - t0)})
    export_detector(head, params, out, {"fit": report})
    return report


def export_detector(head: CatHead, params: DetectionParams, out: Path, details: dict | None = None) -> Path:
    """Backbone + head + ImageNet outputs as one ONNX graph with dynamic height and width."""
    net = WholeFrameDetectorNet(load_backbone(BACKBONE), head.eval())
    meta = ModelMeta("detector", BACKBONE, SPEC, detection=params, details={"head": head.config, **(details or {})})
    return export_onnx(net, meta, out, DETECTOR_OUTPUTS, dynamic_size=True)
