"""Interleaved timing of model runs (ONNX Runtime, 2 threads, 30 rounds, random inputs): version
0.1's centre-crop detector (224x224) vs the whole-frame graph at 352x256 (4:3) and 384x224 (16:9),
and second-look crops of S x S in batches of 1-3.

    git show d8cfa3d:src/catscanner/models/detector.onnx > /tmp/detector_v01.onnx
    python benchmarks/second_look_speed.py
"""
import time, numpy as np
from catscanner.runtime.engine import OrtModel
v01 = OrtModel("/tmp/detector_v01.onnx", threads=2)
wf = OrtModel("src/catscanner/models/detector.onnx", threads=2)
rng = np.random.default_rng(0)
cases = {"v0.1 224x224": (v01, (1, 3, 224, 224)), "whole 352x256": (wf, (1, 3, 256, 352)),
         "whole 384x224": (wf, (1, 3, 224, 384))}
for S in (160, 192, 224):
    for k in (1, 2, 3):
        cases[f"crops {k}x{S}"] = (wf, (k, 3, S, S))
xs = {n: rng.normal(size=s).astype(np.float32) for n, (_, s) in cases.items()}
for n, (m, _) in cases.items():
    for _ in range(3): m.run(xs[n])
times = {n: [] for n in cases}
for r in range(30):
    for n, (m, _) in cases.items():
        t = time.perf_counter(); m.run(xs[n]); times[n].append((time.perf_counter() - t) * 1000)
base = np.median(times["v0.1 224x224"])
for n, t in times.items():
    print(f"{n:16s} p50 {np.median(t):6.1f} ms  p10 {np.percentile(t, 10):6.1f}  / v0.1 {np.median(t) / base:4.2f}x")
