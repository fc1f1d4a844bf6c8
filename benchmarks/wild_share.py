"""How strict the wild-cat rule must be to leave house cats alone.

For each Oxford house cat of a split, the highest wild-cat share (ImageNet mass of wild cats 286-293
over house cats 281-285 + wild cats, where wild cats outweigh house cats) among what the detector's
second look examines (its crops, and since v0.7 the whole photo for a box that fills it); prints the share of house cats at or above each candidate
threshold, i.e. the house cats the rule ``DetectionParams.wild_share`` would call wild.

    python benchmarks/wild_share.py --split trainval            # the fit side: chooses WILD_SHARE
    python benchmarks/wild_share.py --split test                # the report side: measured only
    python benchmarks/wild_share.py --cat-free 2000             # fit-side cat-free photos: their crops'
                                                                # wild-cat mass (chooses WILD_MIN_MASS)
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from catscanner.progress import progress_bar
from catscanner.runtime.breeds import softmax
from catscanner.runtime.contract import Output
from catscanner.runtime.detector import crop_peaks, reuses_first_pass
from catscanner.runtime.imagenet import CAT_CLASSES, WILD_CAT_CLASSES
from catscanner.runtime.preprocessing import preprocess_frame
from catscanner.runtime.scanner import Scanner
from catscanner.training.data import data_root, read_split
from catscanner.training.scenes import Pools, make_scene


def crop_wild(scanner: Scanner, photos: list, desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each photo (a path or an image): the highest wild-cat share among what the second look
    examines of its boxes (a crop, or for a box whose crop would cover ``look_reuse`` of the photo, the
    first pass's whole photo: ``detector.look_evidence``), the highest wild-cat mass (share of all
    ImageNet mass) among those whose share reaches the detector's ``wild_share``, their highest
    heat-map peak (the head's evidence of a cat's centre) and the highest of the first pass's heat map
    (the whole photo's)."""
    det = scanner.detector
    p = det.params
    if not p.second_look:
        raise SystemExit("this detector takes no second look: nothing to measure")
    shares, masses, peaks, firsts = [], [], [], []
    for photo in progress_bar(photos, desc=desc):
        img = scanner.load(photo) if not isinstance(photo, Image.Image) else photo.convert("RGB")
        found, crops = det.examine(img)
        first = det.model.run(preprocess_frame(img, det.preprocess)[None])
        firsts.append(float(first[Output.CAT_HEATMAP].max()))
        logits, heat = [], []
        if crops is not None:
            logits.append(crops[Output.IMAGENET_LOGITS])
            heat.append(crop_peaks(crops))
        if reuses_first_pass([c.box for c in found], img.size, p).any():
            logits.append(first[Output.IMAGENET_LOGITS])  # a box that reused the first pass
            heat.append(np.array([first[Output.CAT_HEATMAP].max()]))
        if not logits:
            shares.append(0.0)
            masses.append(0.0)
            peaks.append(0.0)
            continue
        prob = softmax(np.concatenate(logits))
        house, wild = prob[:, list(CAT_CLASSES)].sum(1), prob[:, list(WILD_CAT_CLASSES)].sum(1)
        share = np.where(wild > house, wild / (house + wild), 0.0)
        shares.append(float(share.max()))
        masses.append(float(np.where(share >= p.wild_share, wild, 0.0).max()))
        peaks.append(float(np.concatenate(heat).max()))
    return np.array(shares), np.array(masses), np.array(peaks), np.array(firsts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="trainval", choices=("trainval", "test"))
    ap.add_argument("--models", default=None, help="model folder (default: the shipped models)")
    ap.add_argument("--data", default=None, help="folder holding oxford-iiit-pet/ (default: the shared data)")
    ap.add_argument("--cat-free", type=int, default=0, metavar="SCENES",
                    help="measure instead the wild-cat mass of crops of the fit side's cat-free photos (trainval "
                         "dogs, the even COCO half, and the cat-free ones among the first SCENES fit scenes): "
                         "what ``WILD_MIN_MASS`` must exceed")
    a = ap.parse_args()
    scanner = Scanner(a.models, threads=2)
    if a.cat_free:
        pools = Pools("fit", a.data)
        scenes = [s.image for s in (make_scene(pools, i) for i in range(a.cat_free)) if not s.has_cat]
        _, masses, _, _ = crop_wild(scanner, pools.dogs + pools.coco + scenes, "fit-side cat-free photos")
        print(f"{len(masses)} cat-free photos; crops with wild share >= {scanner.detector.params.wild_share}: "
              f"{int(np.sum(masses > 0))}; their wild mass, highest first: {np.round(np.sort(masses[masses > 0])[::-1][:10], 3)}")
        return
    cats = read_split(data_root(a.data) / "oxford-iiit-pet", a.split)
    shares, _, peaks, firsts = crop_wild(scanner, [c.path for c in cats], "house cats")
    for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98):
        print(f"wild share >= {t}: {np.mean(shares >= t):.4f} of {len(shares)} {a.split} house cats "
              f"({int(np.sum(shares >= t))})")
    looked = peaks[peaks > 0]
    print(f"highest crop heat-map peak of the {len(looked)} {a.split} house cats with a crop looked at: "
          + ", ".join(f"{q} % below {np.percentile(looked, q):.3f}" for q in (1, 2, 5, 10, 25, 50)))
    print(f"first pass's heat-map peak of the {len(firsts)} {a.split} house cats (the whole-photo wild rule's bar): "
          + ", ".join(f"{q} % below {np.percentile(firsts, q):.3f}" for q in (1, 2, 5, 10, 25, 50))
          + f"; under wild_min_peak {scanner.detector.params.wild_min_peak}: {int(np.sum(firsts < scanner.detector.params.wild_min_peak))}")


if __name__ == "__main__":
    main()
