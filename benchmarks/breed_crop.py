"""Which crop should the breed model read: the centre of the photo, or the cat's own box from the
whole-frame detector? Measured with a cross-validation fold model on the photos it never saw.

    python benchmarks/breed_crop.py runs/cv_lite2_mixup_e7/fold0/best.pt [--scales 1 1.25 1.5] [--threads 1]

The fold checkpoint is exported to ONNX beside the shipped detector in a temporary folder; its own
held-out fold (``--folds k --fold i`` in its config) is scanned twice: the breed model on the centre
crop (what ``catscan evaluate`` measures) and the scanner's answer (the top breed of the most
confident cat, read from that cat's box). A photo where the scanner finds no cat counts as wrong for
the scanner; the figures on the photos where it found one are printed too. ``--scales``: the side of
the square read around each cat, in multiples of its box's shorter side (the detector's
``breed_crop_scale``), one scan of the fold per scale.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
import tempfile
from pathlib import Path

import numpy as np

from catscanner.progress import progress_bar
from catscanner.runtime.breeds import BREEDS, BreedClassifier
from catscanner.runtime.contract import ModelFiles
from catscanner.runtime.engine import OrtModel
from catscanner.runtime.scanner import Scanner
from catscanner.training.data import map_batches, oxford_root
from catscanner.training.evaluate import breed_split
from catscanner.training.export import export_breeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="best.pt of a fold run (catscan cross-validate)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export_breeds(args.checkpoint, Path(tmp) / "breeds.onnx")
        shutil.copy(ModelFiles.resolve(None).detector, Path(tmp) / "detector.onnx")
        clf = BreedClassifier(OrtModel(Path(tmp) / "breeds.onnx", args.threads))
        items = breed_split(oxford_root(), "val", clf.model.meta.details["config"])
        y = np.array([it.label for it in items])
        centre = np.concatenate(map_batches([it.path for it in items], clf.preprocess, clf, "centre crops")).argmax(1)
        scanner = Scanner(tmp, threads=args.threads)
        by_scale = {}
        for scale in args.scales:
            scanner.detector.params = replace(scanner.detector.params, breed_crop_scale=scale)
            top = [scanner.scan(it.path, threshold=0.0).cats
                   for it in progress_bar(items, desc=f"scanner, crop scale {scale}")]
            by_scale[scale] = np.array([BREEDS.index(c[0].breeds[0].breed) if c else -1 for c in top])
    found = by_scale[args.scales[0]] >= 0
    print(f"{args.checkpoint}: {len(items)} held-out photos, a cat found in {found.sum()}")
    print(f"  centre crop              accuracy {np.mean(centre == y):.4f} (all), "
          f"{np.mean(centre[found] == y[found]):.4f} (found)")
    for scale, scanned in by_scale.items():
        print(f"  the cat's box, scale {scale:<4} accuracy {np.mean(scanned == y):.4f} (all, no cat = wrong), "
              f"{np.mean(scanned[found] == y[found]):.4f} (found)")


if __name__ == "__main__":
    main()
