"""Latency of exported breed models side by side (issue 12's bound: at most 1.2x the shipped model).

    python benchmarks/breed_speed.py OLD.onnx NEW.onnx [--photos 32] [--rounds 10] [--threads 2]

Each model reads the same Oxford test photos, preprocessed as its own metadata says (its input
size may differ), one photo per run (batch 1, as ``Scanner.scan`` does). Models are interleaved
round by round (A B A B ..., the order alternating) so that a background load that comes and goes
hits both alike; the load average before and after is printed, because this machine is shared.
Reported: per-photo wall time p50 / p10 and its ratio to the first model.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from catscanner.runtime.breeds import BreedClassifier
from catscanner.runtime.decoding import load_image
from catscanner.runtime.preprocessing import preprocess
from catscanner.runtime.engine import OrtModel
from catscanner.training.data import oxford_root, read_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--photos", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    items = read_split(oxford_root(), "test")[:: max(1, 1044 // args.photos)][: args.photos]
    images = [load_image(it.path) for it in items]
    models = [BreedClassifier(OrtModel(path, args.threads)) for path in args.models]
    inputs = [[preprocess(img, m.preprocess)[None] for img in images] for m in models]
    for m, xs in zip(models, inputs):  # warm-up
        m(xs[0])
    print("load average before", os.getloadavg())
    times: list[list[float]] = [[] for _ in models]
    for r in range(args.rounds):
        order = range(len(models)) if r % 2 == 0 else reversed(range(len(models)))
        for k in order:
            for x in inputs[k]:
                t = time.perf_counter()
                models[k](x)
                times[k].append((time.perf_counter() - t) * 1000)
    print("load average after", os.getloadavg())
    base = float(np.median(times[0]))
    for path, m, t in zip(args.models, models, times):
        p50 = float(np.median(t))
        print(f"{path}: input {m.preprocess.size} px, p50 {p50:.2f} ms, p10 {np.percentile(t, 10):.2f} ms "
              f"({len(t)} runs), {p50 / base:.2f}x the first")


if __name__ == "__main__":
    main()
