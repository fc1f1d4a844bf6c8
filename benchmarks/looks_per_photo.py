"""How many crops the second look cuts out and runs per photo, on the bench's generated photo sets:
the part of the detect stage's cost that depends on the detector file (each is a 192 x 192 run of
the graph, about 0.75 of the first pass; since v0.7 a box whose crop would cover half the photo
reuses the first pass instead and is not counted).

    git show 31bfcc9:src/catscanner/models/detector.onnx > /tmp/detector_v04.onnx
    python benchmarks/looks_per_photo.py /tmp/detector_v04.onnx src/catscanner/models/detector.onnx
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from catscanner.bench.photos import make_shape_sets
from catscanner.runtime.contract import Output
from catscanner.runtime.detector import CatDetector
from catscanner.runtime.engine import OrtModel
from catscanner.runtime.decoding import load_image
from catscanner.training.data import data_root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("detectors", nargs="+", help="detector.onnx files")
    ap.add_argument("--photos", type=int, default=30, help="photos per generated set")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sets = make_shape_sets(data_root(None), Path(tmp), a.photos)
        for path in a.detectors:
            det = CatDetector(OrtModel(path, threads=2))
            line = []
            for shape, photos in sets.items():
                counts = []
                for photo in photos:
                    _, crops = det.examine(load_image(photo.path))
                    counts.append(0 if crops is None else len(crops[Output.IMAGENET_LOGITS]))
                c = np.array(counts)
                line.append(f"{shape}: mean {c.mean():.2f}, median {np.median(c):.0f}, two or more {np.mean(c >= 2):.2f}")
            print(path, "—", "; ".join(line), flush=True)


if __name__ == "__main__":
    main()
