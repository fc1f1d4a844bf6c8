"""Which boxes should the second look examine? Candidates (heat-map peak threshold) and selection
(floor, count, and a lower floor for the single most probable box), measured on the fit side's
held-out fifth: cats the head never saw.

    catscan fit-detector --epochs 10 --threads 2 --no-refit-all --look-size 0 \\
        --cache runs/detector_cache --out runs/probe_v06/detector.onnx   # head on four fifths
    python benchmarks/look_selection.py runs/probe_v06/detector.onnx                 # selection
    python benchmarks/look_selection.py runs/probe_v06/detector.onnx --experiment crop-classifier

(Run at 31bfcc9, before fit scenes drew dog photos as backgrounds: rebuilding the head and the
scenes after that change gives other figures.)

For each held-out photo (plain fit photos + the fit scenes, as ``fit_detector`` splits them): the
head's candidates at the lowest peak threshold tried, an out-of-fold first score (5 folds by photo,
refitted for each peak threshold), non-maximum suppression, then each variant's choice of boxes
gets the second look (192 px crops through the same graph, computed once per box and shared by the
variants), an out-of-fold second score and thresholds chosen as ``fit_detector.choose_params`` does.
Reported: photos called cat, cats found, extra boxes, false alarms, and the looks per photo (the
cost: each look is a 192 x 192 run, about 0.74 of the first pass at 50,000 pixels).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from catscanner.progress import progress_bar
from catscanner.runtime.contract import Output
from catscanner.runtime.detector import (box_features, log_softmax, look_evidence, look_features,
                                         kept_boxes, reuses_first_pass)
from catscanner.runtime.engine import OrtModel
from catscanner.runtime.preprocessing import preprocess_frame, preprocess_square
from catscanner.training.fit_detector import (SecondLook, _base_params, _out_of_fold, pick_thresholds, split_by_cat,
                                              threshold_table)
from catscanner.training.metrics import finds
from catscanner.training.scenes import Pools, make_scene, plain_items

PEAKS = (0.05, 0.02, 0.01)
# (floor, count, floor of the most probable box)
SELECTIONS = ((0.1, 3, 0.1), (0.1, 3, 0.0), (0.05, 3, 0.05), (0.05, 3, 0.0), (0.1, 4, 0.0), (0.1, 2, 0.0),
              (0.02, 3, 0.0))


class Probe:
    """The held-out (or training) photos of the fit side, their first-pass candidates and, computed
    once per box on demand, the second look's outputs on their crops."""

    def __init__(self, model: OrtModel, side: str, limit: int = 0, reuse: float = 0.0):
        # reuse: a box whose crop would cover this share of the photo reuses the first pass, as the
        # runtime's look_evidence does (0: every box cut out, as before v0.7)
        self.model, self.spec, self.look = model, model.meta.preprocess, SecondLook(reuse=reuse)
        self.base = replace(_base_params(stride=model.meta.detection.stride), peak_threshold=min(PEAKS))
        self.pools = Pools("fit")
        self.plain = [s for k in ("cat", "dog", "coco") for s in plain_items(self.pools, k)]
        light = [dict(names=[c.name for c in s.cats], i=i) for i, s in enumerate(self.plain)]
        light += [dict(names=[c.name for c in make_scene(self.pools, j).cats], i=len(self.plain) + j) for j in range(4000)]
        train, held = split_by_cat(light)
        chosen = held if side == "held" else train
        if limit:
            chosen = chosen[:: max(1, len(chosen) // limit)][:limit]
        self.photos = [self._first_pass(r["i"]) for r in progress_bar(chosen, desc=f"first pass on the {side} photos")]
        self.folds = np.arange(len(self.photos)) % 5
        self.look_seconds, self.looks = 0.0, 0

    def scene(self, i: int):
        return self.plain[i] if i < len(self.plain) else make_scene(self.pools, i - len(self.plain))

    def _first_pass(self, i: int) -> dict:
        sc = self.scene(i)
        img = sc.image.convert("RGB")
        W, H = img.size
        x = preprocess_frame(img, self.spec)[None]
        out = self.model.run(x)
        boxes, feats, _ = box_features(out, 0, self.base)
        boxes = boxes * np.array([W / x.shape[3], H / x.shape[2]] * 2)
        true = [c.box for c in sc.cats]
        return dict(i=i, boxes=boxes, f1=feats, y=np.array([any(finds(tuple(b), t) for t in true) for b in boxes], bool),
                    true=true, scene_size=(W, H), cats=[(c.box[0] / W, c.box[1] / H, c.box[2] / W, c.box[3] / H) for c in sc.cats],
                    crops={}, heat=out[Output.CAT_HEATMAP][0, 0], logits=out[Output.IMAGENET_LOGITS][0])

    def crop_outputs(self, n: int, js: list[int]) -> dict[str, np.ndarray]:
        ph = self.photos[n]
        todo = [j for j in js if j not in ph["crops"]]
        if todo:
            img = self.scene(ph["i"]).image.convert("RGB")
            t = time.time()
            out = self.model.run(np.stack([preprocess_square(img, tuple(ph["boxes"][j]), self.look.size, self.spec,
                                                             self.look.margin) for j in todo]))
            self.look_seconds += time.time() - t
            self.looks += len(todo)
            for m, j in enumerate(todo):
                ph["crops"][j] = {k: v[m:m + 1] for k, v in out.items() if k != Output.IMAGENET_MAP}
        return {k: np.concatenate([ph["crops"][j][k] for j in js]) for k in ph["crops"][js[0]]}

    def evidence(self, n: int, boxes: np.ndarray, js: list[int], reuse: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(ImageNet logits, heat-map peaks) of what the second look sees of photo ``n``'s candidates
        ``js`` (``boxes``), exactly as the runtime's ``look_evidence`` gets them: their crops'
        outputs, or with ``reuse`` and ``self.look.reuse`` the first pass's whole-photo outputs for a
        box whose crop would cover that share of the photo."""
        ph = self.photos[n]
        params = replace(self.base, look_reuse=self.look.reuse if reuse else 0.0, look_margin=self.look.margin)
        cut = [j for j, r in zip(js, reuses_first_pass(boxes, ph["scene_size"], params)) if not r]
        first = {Output.IMAGENET_LOGITS: ph["logits"][None], Output.CAT_HEATMAP: ph["heat"][None, None]}
        return look_evidence(first, 0, boxes, ph["scene_size"], params, lambda _: self.crop_outputs(n, cut))

    def rows(self, peak: float) -> tuple[list[tuple], list[np.ndarray]]:
        """Candidate rows (boxes, first-score features, labels) at a peak threshold, and each row's
        indices into the photo's candidates."""
        masks = [ph["f1"][:, 0] >= np.log(peak / (1 - peak)) - 1e-9 for ph in self.photos]
        return [(ph["boxes"][m], ph["f1"][m], ph["y"][m]) for ph, m in zip(self.photos, masks)], \
            [np.nonzero(m)[0] for m in masks]

    def select(self, rows, idx, p1, floor: float, count: int, first: float, extra=None) -> list[tuple]:
        """The rows of the boxes looked at: (boxes, second-look features [+ extra(crop outputs)], labels)."""
        looked = []
        for n, ((boxes, f1, y), p) in enumerate(zip(rows, p1)):
            keep = kept_boxes(boxes, p, self.base)
            sel = [k for pos, k in enumerate(keep) if p[k] >= (first if pos == 0 else floor)][:count]
            if sel:
                f = look_features(f1[sel], *self.evidence(n, boxes[sel], [int(idx[n][k]) for k in sel], extra is None))
                if extra is not None:
                    f = np.concatenate([f, extra(self.crop_outputs(n, [int(idx[n][k]) for k in sel]))], axis=1)
                looked.append((boxes[sel], f, y[sel]))
            else:
                looked.append((np.zeros((0, 4)), None, np.zeros(0, bool)))
        width = next(r[1].shape[1] for r in looked if r[1] is not None)
        return [(b, f if f is not None else np.zeros((0, width)), y) for b, f, y in looked]

    def report(self, name: str, looked: list[tuple]) -> None:
        """Out-of-fold second score, thresholds as fit_detector.choose_params picks them, the summary."""
        p2 = _out_of_fold(looked, self.folds)
        thr, thr2, s, ok = pick_thresholds(threshold_table(self.photos, looked, p2, self.base))
        n_looks = np.array([len(r[2]) for r in looked])
        free = np.array([not ph["cats"] for ph in self.photos])
        print(f"{name}: called cat {s['is_cat_on_cat_photos']:.3f}, cats found {s['cats_found']:.3f}, "
              f"extra {s['extra_boxes_per_photo']:.3f}, false alarms {s['false_alarms']}/{s['cat_free_photos']} "
              f"({'budget met' if ok else 'OVER BUDGET'}; thresholds {thr}/{thr2}); looks per photo mean "
              f"{n_looks.mean():.2f}, cat photos median {np.median(n_looks[~free]):.0f}, cat-free mean "
              f"{n_looks[free].mean():.2f}, none {np.mean(n_looks == 0):.3f}", flush=True)


def selection(probe: Probe) -> None:
    for peak in PEAKS:
        rows, idx = probe.rows(peak)
        recall = np.mean([any(finds(tuple(b), t) for b in r[0]) for ph, r in zip(probe.photos, rows) for t in ph["true"]])
        print(f"\npeak >= {peak}: {sum(len(r[2]) for r in rows) / len(rows):.1f} candidates per photo, "
              f"{recall:.3f} of cats have one", flush=True)
        p1 = _out_of_fold(rows, probe.folds)
        for floor, count, first in SELECTIONS:
            probe.report(f"floor {floor:<4} count {count} first-box floor {first:<4}",
                         probe.select(rows, idx, p1, floor, count, first))


def crop_classifier(probe: Probe, model: OrtModel, train_photos: int) -> None:
    """A linear classifier on the 1,000 ImageNet log-probabilities of each looked-at crop, trained on
    the crops of the head's own training photos (four fifths; the frozen backbone never saw them, and
    the classifier reads only the backbone), its logit added to the second score's features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    peak, (floor, count, first) = 0.05, (0.1, 3, 0.0)
    held_rows, held_idx = probe.rows(peak)
    score = LogisticRegression(C=1.0, max_iter=5000).fit(np.concatenate([r[1] for r in held_rows]),
                                                        np.concatenate([r[2] for r in held_rows]))
    train = Probe(model, "train", train_photos)
    rows, idx = train.rows(peak)
    p1 = [score.predict_proba(r[1])[:, 1] if len(r[1]) else np.zeros(0) for r in rows]
    logits = []
    looked = train.select(rows, idx, p1, floor, count, first,
                          extra=lambda out: (logits.append(out[Output.IMAGENET_LOGITS]) or np.zeros((len(out[Output.IMAGENET_LOGITS]), 0))))
    X = log_softmax(np.concatenate(logits))
    y = np.concatenate([r[2] for r in looked])
    groups = np.concatenate([np.full(len(r[2]), g % 3) for g, r in enumerate(looked)])
    print(f"\ncrop classifier: {len(y)} crops of {len(looked)} training photos, {int(y.sum())} finding a cat", flush=True)
    best = None
    for C in (0.0003, 0.001, 0.003, 0.01):
        oof = np.zeros(len(y))
        for f in range(3):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000)).fit(X[groups != f], y[groups != f])
            oof[groups == f] = clf.predict_proba(X[groups == f])[:, 1]
        ll = log_loss(y, oof)
        print(f"  C={C}: out-of-fold log-loss {ll:.4f}, AUC {roc_auc_score(y, oof):.4f}", flush=True)
        best = min(best or (ll, C), (ll, C))
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=best[1], max_iter=3000)).fit(X, y)

    def logit(out):
        return clf.decision_function(log_softmax(out[Output.IMAGENET_LOGITS]))[:, None]

    p1 = _out_of_fold(held_rows, probe.folds)
    probe.report("held-out, second score as shipped (10 features)",
                 probe.select(held_rows, held_idx, p1, floor, count, first))
    probe.report(f"held-out, + crop classifier logit (C={best[1]})",
                 probe.select(held_rows, held_idx, p1, floor, count, first, extra=logit))


def redraw(boxes: np.ndarray, crop_out: dict[str, np.ndarray], look: SecondLook, stride: int, peak: float,
           size: tuple[float, float]) -> np.ndarray:
    """Looked-at boxes (photo pixels) redrawn from their crops: in each crop (the square
    ``preprocess_square`` cuts around the box), the strongest heat-map cell whose centre lies inside
    the box, decoded with the crop's own box size and offset and mapped back to the photo (``size``:
    its width and height). A box whose crop has no such cell at or above ``peak`` stays as it was."""
    heat, bsize, offset = (crop_out[k] for k in (Output.CAT_HEATMAP, Output.BOX_SIZE, Output.BOX_OFFSET))
    h, w = heat.shape[2:]
    centres = (np.arange(max(h, w)) + 0.5) * stride  # cell centres, crop pixels
    out = np.array(boxes, dtype=float, copy=True)
    for j, b in enumerate(boxes):
        side = max(1.0, look.margin * max(b[2] - b[0], b[3] - b[1]))
        x0, y0, k = (b[0] + b[2] - side) / 2, (b[1] + b[3] - side) / 2, side / look.size
        inside_x = (centres[:w] >= (b[0] - x0) / k) & (centres[:w] <= (b[2] - x0) / k)
        inside_y = (centres[:h] >= (b[1] - y0) / k) & (centres[:h] <= (b[3] - y0) / k)
        masked = np.where(inside_y[:, None] & inside_x[None, :], heat[j, 0], -1.0)
        r, c = np.unravel_index(int(np.argmax(masked)), masked.shape)
        if masked[r, c] < peak:
            continue
        cx, cy = (c + 0.5 + offset[j, 0, r, c]) * stride, (r + 0.5 + offset[j, 1, r, c]) * stride
        bw, bh = np.exp(bsize[j, 0, r, c]) * stride, np.exp(bsize[j, 1, r, c]) * stride
        out[j] = (np.clip(x0 + (cx - bw / 2) * k, 0, size[0]), np.clip(y0 + (cy - bh / 2) * k, 0, size[1]),
                  np.clip(x0 + (cx + bw / 2) * k, 0, size[0]), np.clip(y0 + (cy + bh / 2) * k, 0, size[1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="runs/probe_v06/detector.onnx")
    ap.add_argument("--experiment", choices=("selection", "crop-classifier"), default="selection")
    ap.add_argument("--train-photos", type=int, default=2000)
    a = ap.parse_args()
    model = OrtModel(a.model, threads=2)
    probe = Probe(model, "held")
    if a.experiment == "selection":
        selection(probe)
    else:
        crop_classifier(probe, model, a.train_photos)
    print(f"\n{probe.looks} crops looked at, {1000 * probe.look_seconds / max(1, probe.looks):.1f} ms each (batched per photo)")


if __name__ == "__main__":
    main()
