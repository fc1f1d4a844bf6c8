"""``preprocessing.normalize`` against the way it was written before (float32 HWC, normalise, copy to CHW):
the same arrays, and the time of each, interleaved, on real photos at the detector's input sizes.

    python benchmarks/normalize_speed.py
"""
from __future__ import annotations

import time
from statistics import median

import numpy as np

from catscanner.runtime.contract import ModelFiles
from catscanner.runtime.engine import load_model
from catscanner.runtime.decoding import load_image
from catscanner.runtime.preprocessing import normalize
from catscanner.training.data import data_root, read_split


def before(rgb, spec) -> np.ndarray:
    arr = np.asarray(rgb, dtype=np.float32)
    arr = (arr - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def main() -> None:
    spec = load_model(ModelFiles.resolve(None).detector, 1, "onnxruntime").meta.preprocess
    photos = [load_image(p.path) for p in read_split(data_root(None) / "oxford-iiit-pet", "test")[::50][:20]]
    for size in ((256, 192), (192, 192)):
        imgs = [p.resize(size) for p in photos]
        assert all(np.array_equal(before(i, spec), normalize(i, spec)) for i in imgs)
        t_old, t_new = [], []
        for _ in range(10):
            for img in imgs:
                t = time.perf_counter(); before(img, spec); t_old.append(time.perf_counter() - t)
                t = time.perf_counter(); normalize(img, spec); t_new.append(time.perf_counter() - t)
        print(f"{size[0]}x{size[1]}: identical arrays; p50 before {1000 * median(t_old):.3f} ms, "
              f"now {1000 * median(t_new):.3f} ms ({len(t_old)} calls each, interleaved)")


if __name__ == "__main__":
    main()
