"""How strict the wild-cat rule must be to leave house cats alone.

For each Oxford house cat of a split, the highest wild-cat share (ImageNet mass of wild cats 286-293
over house cats 281-285 + wild cats, where wild cats outweigh house cats) among the crops the
detector's second look examines; prints the share of house cats at or above each candidate
threshold, i.e. the house cats the rule ``DetectionParams.wild_share`` would call wild.

    python benchmarks/wild_share.py --split trainval            # the fit side: chooses WILD_SHARE
    python benchmarks/wild_share.py --split test                # the report side: measured only
"""
from __future__ import annotations

import argparse

import numpy as np

from catscanner.progress import progress_bar
from catscanner.runtime.breeds import softmax
from catscanner.runtime.contract import Output
from catscanner.runtime.detector import candidates
from catscanner.runtime.imagenet import CAT_CLASSES, WILD_CAT_CLASSES
from catscanner.runtime.imaging import preprocess_frame
from catscanner.runtime.scanner import Scanner
from catscanner.training.data import data_root, read_split


def crop_wild_shares(scanner: Scanner, paths: list) -> np.ndarray:
    det = scanner.detector
    if not det.params.second_look:
        raise SystemExit("this detector takes no second look: nothing to measure")
    shares = []
    for path in progress_bar(paths, desc="house cats"):
        img = scanner.load(path)
        x = preprocess_frame(img, det.preprocess)[None]
        look, seen = det._looker(img, img.size), []
        candidates(det.model.run(x), 0, det.params, (img.width / x.shape[3], img.height / x.shape[2]),
                   lambda boxes: seen.append(look(boxes)) or seen[-1])
        if not seen:
            shares.append(0.0)
            continue
        p = softmax(seen[0][Output.IMAGENET_LOGITS])
        house, wild = p[:, list(CAT_CLASSES)].sum(1), p[:, list(WILD_CAT_CLASSES)].sum(1)
        shares.append(float(np.where(wild > house, wild / (house + wild), 0.0).max()))
    return np.array(shares)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="trainval", choices=("trainval", "test"))
    ap.add_argument("--models", default=None, help="model folder (default: the shipped models)")
    ap.add_argument("--data", default=None, help="folder holding oxford-iiit-pet/ (default: the shared data)")
    a = ap.parse_args()
    cats = read_split(data_root(a.data) / "oxford-iiit-pet", a.split)
    shares = crop_wild_shares(Scanner(a.models, threads=2), [c.path for c in cats])
    for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98):
        print(f"wild share >= {t}: {np.mean(shares >= t):.4f} of {len(shares)} {a.split} house cats "
              f"({int(np.sum(shares >= t))})")


if __name__ == "__main__":
    main()
