"""Does the detector answer the same with ``preprocessing.DETECT_REDUCING_GAP`` = 3.0 as without it (None),
on the photos ``catscan bench`` makes (12 MP, 3:1 panorama, 9:16 portrait; 20 each), and how long
is the detect stage? Each setting scans every photo twice; the second pass is compared and timed.

    python benchmarks/reducing_gap_check.py
"""
import tempfile
from pathlib import Path
import numpy as np
from catscanner.bench.photos import make_shape_sets
from catscanner.runtime import preprocessing
from catscanner.runtime.scanner import Scanner
from catscanner.training.metrics import iou

tmp = Path(tempfile.mkdtemp())
sets = make_shape_sets(Path("../shared/data"), tmp, 20, shapes=("12mp", "panorama", "portrait"))
s = Scanner(threads=2)
for name, photos in sets.items():
    res = {}
    for gap in (None, 3.0, None, 3.0):
        preprocessing.DETECT_REDUCING_GAP = gap
        out = []
        for ph in photos:
            r = s.scan(ph.path if hasattr(ph, "path") else ph[0])
            out.append(r)
        res.setdefault(gap, []).append(out)
    a, b = res[None][1], res[3.0][1]
    same = sum(x.is_cat == y.is_cat and len(x.cats) == len(y.cats) and (x.top_breed.breed if x.top_breed else None) == (y.top_breed.breed if y.top_breed else None) for x, y in zip(a, b))
    dp = max(abs(x.cat_probability - y.cat_probability) for x, y in zip(a, b))
    ious = [iou((x.box.left, x.box.top, x.box.right, x.box.bottom), (y.box.left, y.box.top, y.box.right, y.box.bottom)) for x, y in zip(a, b) if x.box and y.box]
    det = {g: np.median([r.timing_ms.detect_ms for r in res[g][1]]) for g in res}
    print(name, f"same answers {same}/{len(a)}; cats called {sum(x.is_cat for x in a)} vs {sum(y.is_cat for y in b)}; max |dp| {dp:.3f}; min box IoU {min(ious) if ious else None:.2f}; detect p50 ms none {det[None]:.1f} gap3 {det[3.0]:.1f}")
