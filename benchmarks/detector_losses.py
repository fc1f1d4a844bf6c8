"""Where the detector loses the report scenes' cats: for each true cat, the first stage that fails it.

    python benchmarks/detector_losses.py --scenes 300 [--models DIR]

Stages, in the runtime's order (``runtime/detector.py``): *no candidate* (no heat-map peak's box
finds it), *suppressed* (only boxes that non-maximum suppression drops find it), *below floor* /
*beyond count* (a kept box finds it but is not among the boxes the second look examines: its first
score is under ``look_floor``, or ``look_count`` more probable boxes came first), *rejected* (looked
at, but the second score or the thresholds turn it down), *found*. Counted per cat size.
"""
from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from catscanner.progress import progress_bar
from catscanner.runtime.detector import box_features, kept_boxes, score, to_look_at
from catscanner.runtime.preprocessing import preprocess_frame
from catscanner.runtime.scanner import Scanner
from catscanner.training.metrics import finds
from catscanner.training.scenes import Pools, make_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--models", default=None, help="model folder (default: the shipped models)")
    ap.add_argument("--data", default=None, help="folder holding oxford-iiit-pet/ and coco128/")
    a = ap.parse_args()
    scanner = Scanner(a.models, threads=2)
    det, p = scanner.detector, scanner.detector.params
    pools = Pools("report", a.data)
    counts: dict[str, Counter] = {}
    for i in progress_bar(range(a.scenes), desc="report scenes"):
        scene = make_scene(pools, i)
        W, H = scene.image.size
        x = preprocess_frame(scene.image, det.preprocess)[None]
        boxes, features, _ = box_features(det.model.run(x), 0, p)
        boxes = boxes * np.array([W / x.shape[3], H / x.shape[2]] * 2)
        probs = score(features, p) if len(boxes) else np.zeros(0)
        keep = kept_boxes(boxes, probs, p)
        looked = to_look_at(probs, keep, p.look_floor, p.look_count) if p.second_look else keep
        found = [(c.box.left, c.box.top, c.box.right, c.box.bottom) for c in scanner.scan(scene.image).cats]
        for cat in scene.cats:
            t = cat.box
            side = max(t[2] - t[0], t[3] - t[1]) / min(W, H)
            size = "15-30 %" if side < 0.3 else "30-60 %" if side < 0.6 else "60-100 %"
            hit = [j for j in range(len(boxes)) if finds(tuple(boxes[j]), t)]
            if any(finds(b, t) for b in found):
                stage = "found"
            elif not hit:
                stage = "no candidate"
            elif not set(hit) & set(keep):
                stage = "suppressed"
            elif not set(hit) & set(looked):
                # beyond count when a kept box that finds it reached the floor; below floor when none did
                stage = "beyond count" if any(probs[j] >= p.look_floor for j in set(hit) & set(keep)) else "below floor"
            else:
                stage = "rejected"
            counts.setdefault("all", Counter())[stage] += 1
            counts.setdefault(size, Counter())[stage] += 1
    for size, c in counts.items():
        print(f"{size:>9}: {sum(c.values())} cats — " + ", ".join(f"{k} {v}" for k, v in c.most_common()))


if __name__ == "__main__":
    main()
