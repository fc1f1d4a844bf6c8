"""Runtime and precision (issue 9): speed and accuracy of the shipped models on ONNX Runtime and
OpenVINO, f32 / bf16 / int8. Findings: benchmarks/FINDINGS.md, "Runtime and precision (issue 9)".

    python benchmarks/runtimes.py speed    [--models DIR] [--photos 16] [--rounds 20] [--threads 2]
                                           [--batch 1 8] [--configs ort:f32 ov:f32 ov:bf16 ...]
                                           [--int8 breeds=FILE.xml ...] [--json-out FILE]
    python benchmarks/runtimes.py accuracy [--models DIR] [--split test] [--configs ...] [--int8 ...]   # breeds
    python benchmarks/runtimes.py detector [--photos N] [--configs ov:f32 ov:bf16]   # scans vs ONNX Runtime f32
    python benchmarks/runtimes.py shapes   [--models DIR]      # OpenVINO: one dynamic compile vs one per shape
    python benchmarks/runtimes.py coldstart [--rounds 5]       # fresh process -> both models loaded -> first result
    python benchmarks/runtimes.py frames   [--configs ...]     # whole-frame detector: each input shape, first and steady

A config is RUNTIME:PRECISION[:static] (ort = onnxruntime, ov = openvino; precision f32, bf16 or
int8[@NAME], int8 needing ``--int8 MODEL=FILE`` (or ``NAME=FILE``), a quantized OpenVINO IR from
``quantize_ov.py``; ``static``: OpenVINO compiled once per input shape).
Configurations are interleaved round by round (A B C A B C ..., the order rotating each round) so
that a background load that comes and goes hits every one alike; per-photo wall time (median and
10th percentile) and process CPU time are reported, with the load average and the busiest other
processes, because this machine is shared.

OpenVINO could not read the centre-crop ``detector.onnx`` exported before the whole-frame one (ONNX
opset 17 ``ReduceLogSumExp``, whose ``axes`` attribute OpenVINO's ONNX reader ignores); for
measurement only, ``speed`` converts such a file to opset 18 (needs the ``onnx`` package) and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from catscanner.runtime.breeds import BREEDS, softmax
from catscanner.runtime.contract import ModelFiles, Output
from catscanner.runtime.engine import ONNXRUNTIME, OPENVINO, Model, OpenVinoModel, OrtModel, native_bf16
from catscanner.runtime.decoding import load_image
from catscanner.runtime.preprocessing import preprocess
from catscanner.training.data import oxford_root, read_split

SHORT = {"ort": ONNXRUNTIME, "ov": OPENVINO, ONNXRUNTIME: ONNXRUNTIME, OPENVINO: OPENVINO}


def machine_state() -> dict:
    """Load average and the busiest other processes right now (this machine is shared)."""
    out = {"loadavg": os.getloadavg(), "cpus": os.cpu_count(), "native_bf16": native_bf16()}
    try:
        ps = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True, timeout=10).stdout
        out["busiest"] = [line.strip()[:120] for line in ps.splitlines()[1:8]
                          if str(os.getpid()) not in line.split()[:1] and float(line.split()[1]) >= 5]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return out


def openvino_readable(path: Path, workdir: Path) -> tuple[Path, str | None]:
    """``path``, or an opset-18 copy of it in ``workdir`` when OpenVINO cannot read the original."""
    import openvino as ov

    try:
        ov.Core().read_model(str(path))
        return path, None
    except Exception:
        import onnx
        from onnx import version_converter

        out = workdir / f"{path.stem}_opset18.onnx"
        onnx.save(version_converter.convert_version(onnx.load(str(path)), 18), str(out))
        return out, f"{path.name}: OpenVINO cannot read it (opset 17 ReduceLogSumExp); measured an opset-18 copy on every runtime"


def load(config: str, path: Path, threads: int, int8: dict[str, Path]) -> Model:
    parts = config.split(":")
    runtime, precision = SHORT[parts[0]], parts[1] if len(parts) > 1 else "f32"
    static = "static" in parts[2:]
    if runtime == ONNXRUNTIME:
        if precision != "f32":
            raise SystemExit(f"{config}: ONNX Runtime runs f32 only here")
        return OrtModel(path, threads)
    if precision.startswith("int8"):  # int8 or int8@NAME (--int8 NAME=FILE), to compare several
        key = precision.partition("@")[2] or ("detector" if "detector" in path.name else "breeds")
        if key not in int8:
            raise SystemExit(f"{config}: pass --int8 {key}=FILE.xml (made by benchmarks/quantize_ov.py)")
        return OpenVinoModel(int8[key], threads, "f32", static_shapes=static)
    return OpenVinoModel(path, threads, precision, static_shapes=static)


def test_photos(split: str, n: int | None, species: str | None = "cat") -> list:
    """``n`` photos of ``split`` (all if None), spread over the breeds (round-robin by breed)."""
    items = read_split(oxford_root(), split, species=species)
    if n is None:
        return items
    by_breed: dict[str, list] = {}
    for it in items:
        by_breed.setdefault(it.breed, []).append(it)
    picked, i = [], 0
    while len(picked) < n and any(i < len(v) for v in by_breed.values()):
        picked += [v[i] for v in by_breed.values() if i < len(v)]
        i += 1
    return picked[:n]


def speed(args) -> dict:
    files = ModelFiles.resolve(args.models)
    int8 = dict(kv.split("=", 1) for kv in args.int8)
    int8 = {k: Path(v) for k, v in int8.items()}
    photos = [load_image(it.path) for it in test_photos("test", args.photos * 3)]
    report: dict = {"command": " ".join(sys.argv), "before": machine_state(), "threads": args.threads,
                    "photos": len(photos), "rounds": args.rounds, "notes": [], "results": []}
    work = Path(tempfile.mkdtemp(prefix="catscan-rt-"))
    for path in [p for p in (files.detector, files.breeds) if p is not None]:
        if args.only and path.stem not in args.only:
            continue
        readable, note = openvino_readable(path, work)
        if note:
            report["notes"].append(note)
        models = {c: load(c, readable, args.threads, int8) for c in args.configs}
        spec = next(iter(models.values())).preprocess
        arrays = [preprocess(img, spec) for img in photos]
        # A whole-frame detector's input follows each photo's shape: time the most common one.
        shapes_seen = [a.shape for a in arrays]
        common = max(set(shapes_seen), key=shapes_seen.count)
        x = np.stack([a for a in arrays if a.shape == common][:args.photos])
        report["notes"].append(f"{path.name}: {len(x)} photos of input shape {common}")
        for batch in args.batch:
            wall: dict[str, list[float]] = {c: [] for c in models}
            cpu: dict[str, list[float]] = {c: [] for c in models}
            for m in models.values():  # warm-up (and OpenVINO's first run at this shape)
                m.run(x[:batch])
                m.run(x[:batch])
            order = list(models)
            for r in range(args.rounds):
                for c in order[r % len(order):] + order[:r % len(order)]:
                    for i in range(0, len(x) - batch + 1, batch):
                        t, c0 = time.perf_counter(), time.process_time()
                        models[c].run(x[i:i + batch])
                        cpu[c].append((time.process_time() - c0) * 1000 / batch)
                        wall[c].append((time.perf_counter() - t) * 1000 / batch)
            for c, m in models.items():
                row = {"model": path.name, "config": c, "runtime": m.runtime, "precision": m.precision,
                       "batch": batch, "ms_p50": round(float(np.median(wall[c])), 2),
                       "ms_p10": round(float(np.percentile(wall[c], 10)), 2),
                       "cpu_ms_p50": round(float(np.median(cpu[c])), 2), "n": len(wall[c])}
                report["results"].append(row)
                print(f"{path.name:14} batch {batch}  {c:18} {m.runtime:11} {m.precision:5}  "
                      f"p50 {row['ms_p50']:7.2f} ms  p10 {row['ms_p10']:7.2f} ms  cpu p50 {row['cpu_ms_p50']:7.2f} ms/photo",
                      flush=True)
    report["after"] = machine_state()
    print("load average before", report["before"]["loadavg"], "after", report["after"]["loadavg"])
    for line in report["before"].get("busiest", []):
        print("  busy:", line)
    for note in report["notes"]:
        print("note:", note)
    return report


def breed_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    pred = probs.argmax(1)
    f1 = []
    for k in range(len(BREEDS)):
        tp = np.sum((pred == k) & (labels == k))
        fp, fn = np.sum((pred == k) & (labels != k)), np.sum((pred != k) & (labels == k))
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(pred == labels)), "macro_f1": float(np.mean(f1))}


def accuracy(args) -> dict:
    files = ModelFiles.resolve(args.models)
    int8 = {k: Path(v) for k, v in (kv.split("=", 1) for kv in args.int8)}
    items = test_photos(args.split, args.photos)
    labels = np.array([it.label for it in items])
    report: dict = {"command": " ".join(sys.argv), "split": args.split, "n": len(items), "results": {}}
    ref_logits = None
    for c in args.configs:
        m = load(c, files.breeds, args.threads, int8)
        logits = []
        for i in range(0, len(items), 16):
            logits.append(m.run(np.stack([preprocess(load_image(it.path), m.preprocess) for it in items[i:i + 16]]))[Output.BREED_LOGITS])
        logits = np.concatenate(logits)
        probs = softmax(logits, m.meta.temperature)
        row = {"runtime": m.runtime, "precision": m.precision, **breed_metrics(labels, probs)}
        if ref_logits is None:
            ref_logits, ref_row = logits, row
        row["top1_agreement_with_first"] = float(np.mean(logits.argmax(1) == ref_logits.argmax(1)))
        row["max_abs_logit_diff"] = float(np.abs(logits - ref_logits).max())
        row["max_abs_prob_diff"] = float(np.abs(probs - softmax(ref_logits, m.meta.temperature)).max())
        row["accuracy_diff_points"] = round((row["accuracy"] - ref_row["accuracy"]) * 100, 3)
        row["macro_f1_diff_points"] = round((row["macro_f1"] - ref_row["macro_f1"]) * 100, 3)
        report["results"][c] = row
        print(f"{c:18} {m.runtime:11} {m.precision:5} accuracy {row['accuracy']:.4f} ({row['accuracy_diff_points']:+.2f} pt) "
              f"macro-F1 {row['macro_f1']:.4f} ({row['macro_f1_diff_points']:+.2f} pt)  top-1 agreement "
              f"{row['top1_agreement_with_first']:.4f}  max |dlogit| {row['max_abs_logit_diff']:.4f}", flush=True)
    return report


def shapes(args) -> dict:
    """OpenVINO: compile time and speed of one dynamic-shape compile vs one compile per shape."""
    files = ModelFiles.resolve(args.models)
    report: dict = {"command": " ".join(sys.argv), "before": machine_state(), "results": []}
    rs = np.random.RandomState(0)
    for path in [files.breeds]:
        s = OrtModel(path, 1).preprocess.size
        shapes_ = [(1, 3, s, s), (8, 3, s, s)]
        t = time.perf_counter()
        dyn = OpenVinoModel(path, args.threads, "f32", static_shapes=False)
        t_dyn = time.perf_counter() - t
        t = time.perf_counter()
        sta = OpenVinoModel(path, args.threads, "f32", static_shapes=True)
        t_sta = time.perf_counter() - t
        print(f"{path.name}: load+compile dynamic {t_dyn:.2f} s, static (batch 1) {t_sta:.2f} s")
        xs = {sh: rs.rand(*sh).astype(np.float32) for sh in shapes_}
        for sh in shapes_:
            for name, m in (("dynamic", dyn), ("static", sta)):
                t = time.perf_counter()
                m.run(xs[sh])
                print(f"  first run {sh} {name}: {(time.perf_counter() - t) * 1000:.0f} ms")
        times: dict = {}
        for _ in range(args.rounds):
            for sh in shapes_:
                for name, m in (("dynamic", dyn), ("static", sta)):
                    t = time.perf_counter()
                    m.run(xs[sh])
                    times.setdefault((sh[0], name), []).append((time.perf_counter() - t) * 1000 / sh[0])
        for (b, name), v in sorted(times.items()):
            row = {"model": path.name, "batch": b, "mode": name, "ms_p50": round(float(np.median(v)), 2),
                   "ms_p10": round(float(np.percentile(v, 10)), 2)}
            report["results"].append(row)
            print(f"  batch {b} {name:8} p50 {row['ms_p50']:.2f} p10 {row['ms_p10']:.2f} ms/photo")
    report["after"] = machine_state()
    print("load average before", report["before"]["loadavg"], "after", report["after"]["loadavg"])
    return report


def _iou(a, b) -> float:
    iw = max(0, min(a.right, b.right) - max(a.left, b.left))
    ih = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    union = (a.right - a.left) * (a.bottom - a.top) + (b.right - b.left) * (b.bottom - b.top) - iw * ih
    return iw * ih / union if union > 0 else 1.0


def detector(args) -> dict:
    """Scans on each config against ONNX Runtime f32: verdicts identical (goal >= 99.5 %) on the test
    photos (cats and dogs) and on the COCO photos without a cat, and each f32 cat's best box IoU
    (goal >= 0.9)."""
    from catscanner.runtime.scanner import Scanner
    from catscanner.training.data import data_root, read_coco

    sets = {"test": [it.path for it in test_photos("test", args.photos, species=None)],
            "no_cat": [c.path for c in read_coco(data_root() / "coco128") if not c.cat_boxes]}
    report: dict = {"command": " ".join(sys.argv), "n": {k: len(v) for k, v in sets.items()}, "results": {}}
    scans = {}
    for c in ["ort:f32"] + [c for c in args.configs if c != "ort:f32"]:
        runtime, precision = SHORT[c.split(":")[0]], c.split(":")[1]
        scanner = Scanner(args.models, threads=args.threads, runtime=runtime, precision=precision)
        scans[c] = {k: list(scanner.scan_many(v)) for k, v in sets.items()}
        if c == "ort:f32":
            continue
        row: dict = {"runtime": scanner.detector.model.runtime, "precision": scanner.detector.model.precision}
        ious = []
        for k in sets:
            pairs = list(zip(scans["ort:f32"][k], scans[c][k]))
            row[f"verdict_agreement_{k}"] = float(np.mean([a.is_cat == b.is_cat for a, b in pairs]))
            row[f"changed_{k}"] = [str(a.path) for a, b in pairs if a.is_cat != b.is_cat]
            ious += [max((_iou(cat.box, o.box) for o in b.cats), default=0.0)
                     for a, b in pairs if a.is_cat and b.is_cat for cat in a.cats]
        row.update({"boxes": len(ious), "box_iou_min": float(min(ious, default=1.0)),
                    "box_iou_p5": float(np.percentile(ious, 5)) if ious else 1.0})
        report["results"][c] = row
        print(f"{c:14} {row['runtime']:11} {row['precision']:5} verdicts identical: test "
              f"{row['verdict_agreement_test']:.4f} ({len(sets['test'])}), no-cat {row['verdict_agreement_no_cat']:.4f} "
              f"({len(sets['no_cat'])}); box IoU min {row['box_iou_min']:.3f}, p5 {row['box_iou_p5']:.3f} "
              f"over {row['boxes']} cats", flush=True)
    return report


FRAMES = [(256, 352), (352, 256), (256, 384), (224, 384), (160, 640), (320, 320)]


def frames(args) -> dict:
    """The whole-frame detector at the input shapes photos of every shape give: the first run at a
    new shape (OpenVINO prepares its kernels then) and the steady per-photo time, per runtime."""
    files = ModelFiles.resolve(args.models)
    report: dict = {"command": " ".join(sys.argv), "before": machine_state(), "results": []}
    models = {c: load(c, files.detector, args.threads, {}) for c in args.configs}
    if any(d is not None for d in next(iter(models.values())).input_shape[2:]):
        raise SystemExit(f"{files.detector.name} has a fixed input size: nothing to sweep")
    rs = np.random.RandomState(0)
    xs = {hw: rs.uniform(-1, 1, (1, 3, *hw)).astype(np.float32) for hw in FRAMES}
    for hw in FRAMES:
        for c, m in models.items():
            t = time.perf_counter()
            m.run(xs[hw])
            report["results"].append({"config": c, "shape": hw, "first_ms": round((time.perf_counter() - t) * 1000, 1)})
    times: dict = {}
    for _ in range(args.rounds):
        for hw in FRAMES:
            for c, m in models.items():
                t = time.perf_counter()
                m.run(xs[hw])
                times.setdefault((c, hw), []).append((time.perf_counter() - t) * 1000)
    for row in report["results"]:
        v = times[(row["config"], row["shape"])]
        row["ms_p50"], row["ms_p10"] = round(float(np.median(v)), 2), round(float(np.percentile(v, 10)), 2)
        print(f"{row['config']:16} {str(row['shape']):11} first run {row['first_ms']:7.1f} ms   "
              f"then p50 {row['ms_p50']:6.2f} ms  p10 {row['ms_p10']:6.2f} ms")
    report["after"] = machine_state()
    print("load average before", report["before"]["loadavg"], "after", report["after"]["loadavg"])
    return report


COLD = """
import sys, time
t0 = float(sys.argv[1])
import numpy as np
from catscanner.runtime.engine import load_model
models = [load_model(p, None, sys.argv[2], "auto") for p in sys.argv[3:]]
t_load = time.time() - t0
for m in models:
    _, _, h, w = m.input_shape
    m.run(np.zeros((1, 3, h or 224, w or 224), np.float32))
print(t_load, time.time() - t0, *[m.runtime for m in models])
"""


def coldstart(args) -> dict:
    """Spawn -> both models loaded -> first result, in fresh interpreters, runtimes alternating."""
    files = ModelFiles.resolve(args.models)
    work = Path(tempfile.mkdtemp(prefix="catscan-rt-"))
    paths = [str(openvino_readable(files.detector, work)[0]), str(files.breeds)]
    report: dict = {"command": " ".join(sys.argv), "before": machine_state(), "results": {}}
    for _ in range(args.rounds):
        for runtime in (ONNXRUNTIME, OPENVINO):
            out = subprocess.run([sys.executable, "-c", COLD, repr(time.time()), runtime, *paths],
                                 capture_output=True, text=True, check=True).stdout.split()
            report["results"].setdefault(runtime, []).append((float(out[0]), float(out[1])))
    for runtime, v in report["results"].items():
        load_s, first_s = np.median([a for a, _ in v]), np.median([b for _, b in v])
        print(f"{runtime:11} spawn -> models loaded {load_s:.2f} s, -> first result {first_s:.2f} s (median of {len(v)})")
    report["after"] = machine_state()
    print("load average before", report["before"]["loadavg"], "after", report["after"]["loadavg"])
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "accuracy", "detector", "shapes", "coldstart", "frames"])
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--configs", nargs="+", default=None)
    ap.add_argument("--int8", nargs="*", default=[], metavar="MODEL=FILE")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--photos", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--split", default="test")
    ap.add_argument("--only", nargs="*", default=None, help="model file stems (detector, breeds)")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    if args.configs is None:
        args.configs = ["ort:f32", "ov:f32"] + (["ov:bf16"] if native_bf16() else [])
    if args.what == "speed" and args.photos is None:
        args.photos = 16
    if args.what == "coldstart" and args.rounds == 20:
        args.rounds = 5
    report = {"speed": speed, "accuracy": accuracy, "shapes": shapes, "coldstart": coldstart,
              "frames": frames, "detector": detector}[args.what](args)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
