"""Probe (the measurements behind detector v0.4's design): does a second look at each candidate
box, at higher resolution, separate cats better?

    catscan fit-detector --epochs 10 --threads 2 --seed 1 --no-refit-all --look-size 0 \
        --out runs/detector_seed1/detector.onnx          # a first head (detector v0.3's recipe, seed 1)
    python benchmarks/second_look_probe.py 3 100000      # K = 3 boxes, first pass at 100,000 pixels
    python benchmarks/second_look_probe.py 3 50000       # ... at 50,000 pixels (the same head)

Seed-1 first head (trained on four fifths of the fit cats, first pass at 100,000 pixels: that run
came before v0.4, whose fit_detector.MAX_PIXELS is 50,000 — set it back to 100_000 to rebuild the
head); its held-out fifth (cats it never saw). For each photo: the candidates of the head
(first-stage features), the top K by an out-of-fold first-stage score get a crop from the full-size
scene, resized to S x S, run through the same graph; its whole-crop ImageNet class groups and the
crop's heat-map peak are added as features. Thresholds chosen as fit_detector.choose_params does.
"""
import sys, time
from dataclasses import replace
import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression

from catscanner.runtime.engine import OrtModel
from catscanner.runtime.contract import Output
from catscanner.runtime.detector import box_features, kept_boxes, suppress, group_log_masses, _logit, Candidate
from catscanner.runtime.preprocessing import normalize, preprocess_frame
from catscanner.training.scenes import Pools, make_scene, plain_items
from catscanner.training.fit_detector import split_by_cat, _base_params, _outcomes, pick_thresholds
from catscanner.training.metrics import finds, summarize

SEED, K, S = 1, int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 192
model = OrtModel("runs/detector_seed1/detector.onnx", threads=2)
spec = model.meta.preprocess
import dataclasses
MAXPIX = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
spec = dataclasses.replace(spec, max_pixels=MAXPIX)
params = _base_params()
pools = Pools("fit")
scenes = [s for k in ("cat", "dog", "coco") for s in plain_items(pools, k)]
n_plain = len(scenes)
light = [dict(names=[c.name for c in s.cats], i=i) for i, s in enumerate(scenes)]
light += [dict(names=[c.name for c in make_scene(pools, j, SEED).cats], i=n_plain + j) for j in range(4000)]
_, held = split_by_cat(light)
print(len(held), "held-out", flush=True)


def scene_of(i):
    return scenes[i] if i < n_plain else make_scene(pools, i - n_plain, SEED)


def crop_square(img, box, size, margin=1.15):
    l, t, r, b = box
    side = min(max(r - l, b - t) * margin, max(img.size))
    cx, cy = (l + r) / 2, (t + b) / 2
    x0, y0 = cx - side / 2, cy - side / 2
    # pad with grey outside the photo (keeps the cat centred and at the same scale)
    return img.resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + side, y0 + side)) if (
        x0 >= 0 and y0 >= 0 and x0 + side <= img.width and y0 + side <= img.height) else \
        _padded(img, (x0, y0, side), size)


def _padded(img, xys, size):
    x0, y0, side = xys
    canvas = Image.new("RGB", (int(np.ceil(side)), int(np.ceil(side))), (127, 127, 127))
    canvas.paste(img, (int(round(-x0)), int(round(-y0))))
    return canvas.resize((size, size), Image.BICUBIC)


rows = []
t0 = time.time()
for n, r in enumerate(held):
    sc = scene_of(r["i"])
    img = sc.image.convert("RGB")
    W, H = img.size
    x = preprocess_frame(img, spec)[None]
    out = model.run(x)
    in_h, in_w = x.shape[2:]
    boxes, feats, logits = box_features(out, 0, params)
    boxes = boxes * np.array([W / in_w, H / in_h, W / in_w, H / in_h])
    true = [c.box for c in sc.cats]
    labels = np.array([any(finds(tuple(b), t) for t in true) for b in boxes], bool)
    rows.append(dict(boxes=boxes, f1=feats, y=labels, img=img, true=true, scene_size=(W, H),
                     cats=[(c.box[0] / W, c.box[1] / H, c.box[2] / W, c.box[3] / H) for c in sc.cats]))
    if n % 100 == 0:
        print(n, f"{time.time() - t0:.0f}s", flush=True)

# out-of-fold first-stage score
folds = np.arange(len(rows)) % 5
p1 = [None] * len(rows)
for f in range(5):
    X = np.concatenate([r["f1"] for i, r in enumerate(rows) if folds[i] != f])
    y = np.concatenate([r["y"] for i, r in enumerate(rows) if folds[i] != f])
    lr = LogisticRegression(C=1.0, max_iter=5000).fit(X, y)
    for i in np.nonzero(folds == f)[0]:
        p1[i] = lr.predict_proba(rows[i]["f1"])[:, 1] if len(rows[i]["f1"]) else np.zeros(0)

# second look on the top K after NMS, at several crop sizes
t1 = time.time()
SIZES = (192, 224)
for i, r in enumerate(rows):
    keep = suppress(r["boxes"], p1[i], params.nms_iou, params.nms_contained)[:K] if len(r["boxes"]) else []
    r["keep"] = keep
    r["p1k"] = p1[i][keep] if keep else np.zeros(0)
    for S in SIZES:
        if keep:
            batch = np.stack([normalize(crop_square(r["img"], r["boxes"][k], S), spec) for k in keep])
            o = model.run(batch)
            g = group_log_masses(o[Output.IMAGENET_LOGITS])
            hp = _logit(o[Output.CAT_HEATMAP].reshape(len(keep), -1).max(axis=1))[:, None]
            r[f"f2_{S}"] = np.concatenate([r["f1"][keep], g, hp], axis=1)
        else:
            r[f"f2_{S}"] = np.zeros((0, 10))
    del r["img"]
print(f"second look: {time.time() - t1:.0f}s", flush=True)
import pickle
pickle.dump(rows, open(f"runs/probe_rows_{MAXPIX}.pkl", "wb"))

def evaluate(feat_key, sel_key):
    oof = [None] * len(rows)
    for f in range(5):
        X = np.concatenate([r[feat_key] for i, r in enumerate(rows) if folds[i] != f])
        y = np.concatenate([r["y"][r[sel_key]] if sel_key else r["y"] for i, r in enumerate(rows) if folds[i] != f])
        lr = LogisticRegression(C=1.0, max_iter=5000).fit(X, y)
        for i in np.nonzero(folds == f)[0]:
            oof[i] = lr.predict_proba(rows[i][feat_key])[:, 1] if len(rows[i][feat_key]) else np.zeros(0)
    table = []
    for thr in np.round(np.arange(0.30, 0.96, 0.025), 3):
        for thr2 in np.round(np.arange(0.10, thr + 1e-9, 0.05), 3):
            p = replace(params, cat_threshold=float(thr), box_threshold=float(thr2))
            found = []
            for r, pr in zip(rows, oof):
                b = r["boxes"][r[sel_key]] if sel_key else r["boxes"]
                keep = kept_boxes(b, pr, p)
                found.append([Candidate(tuple(b[k]), float(pr[k]), None) for k in keep])
            table.append((float(thr), float(thr2), summarize(_outcomes(rows, found, p))))
    return pick_thresholds(table), table


def restrict(k, floor=0.0):
    for r in rows:
        m = np.arange(len(r["keep"])) < k
        m &= r["p1k"] >= floor
        r["keep_r"] = [kk for kk, mm in zip(r["keep"], m) if mm]
        for S in SIZES:
            r[f"g_{S}"] = r[f"f2_{S}"][m]


def report(name, fk, sk):
    (thr, thr2, s, ok), table = evaluate(fk, sk)
    crops = sum(len(r[sk]) for r in rows) / len(rows) if sk else 0
    print(name, f"crops/photo {crops:.2f}", "budget met" if ok else "BUDGET NOT MET", thr, thr2,
          {k: s[k] for k in ("is_cat_on_cat_photos", "cats_found", "extra_boxes_per_photo", "false_alarm_photos")}, flush=True)


report("first stage only", "f1", None)
for k in (1, 2, 3):
    for floor in (0.0, 0.1):
        restrict(k, floor)
        for S in SIZES:
            report(f"K={k} floor={floor} S={S}", f"g_{S}", "keep_r")

def proposal_recall(sel):
    n = hit = 0
    for r in rows:
        b = r["boxes"][r["keep"]] if sel else r["boxes"]
        for t in r["true"]:
            n += 1
            hit += any(finds(tuple(x), t) for x in b)
    return hit / max(1, n)

print("proposal recall: all candidates", round(proposal_recall(False), 3), f"top {K}", round(proposal_recall(True), 3))
