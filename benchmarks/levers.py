"""Speed levers for Cat Scanner, measured one at a time (issue 5). Findings: benchmarks/FINDINGS.md.

    python benchmarks/levers.py ort     [--models DIR] [--rounds N]   # session options, batch, threads
    python benchmarks/levers.py decode  [--photos N]                  # JPEG draft decoding, preprocess cost
    python benchmarks/levers.py batch   [--models DIR] [--photos N]   # scan_many batch size
    python benchmarks/levers.py arena   [--models DIR]                # ORT memory arena: RSS vs speed
    python benchmarks/levers.py fold    [--models DIR]                # static pads folded into Conv
    python benchmarks/levers.py threads [--models DIR] [--photos N]   # intra-op threads x spinning
    python benchmarks/levers.py quant   [--models DIR] [--photos N]   # int8 vs fp32: speed + agreement
    python benchmarks/levers.py quantacc [--models DIR]               # int8 vs fp32: test-split accuracy

Configurations are interleaved round by round (A B C A B C ...) and the median is reported, so
that a background load that comes and goes hits every configuration alike.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from catscanner.bench import resolve_data_root, select_photos
from catscanner.data import read_split
from catscanner.imaging import decode_image, preprocess
from catscanner.scanner import Scanner, default_model_dir

ROOT = Path(__file__).resolve().parent


def _photos(n: int, split: str = "test") -> list:
    return select_photos(read_split(resolve_data_root(None), split, species=None), n)


def _inputs(n: int, spec) -> np.ndarray:
    return np.stack([preprocess(decode_image(p.path.read_bytes()), spec) for p in _photos(n)])


def session(path, threads=2, level="all", mode="sequential", arena=True, spinning=None) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    o.execution_mode = ort.ExecutionMode.ORT_PARALLEL if mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 2 if mode == "parallel" else 1
    o.enable_cpu_mem_arena = arena
    if spinning is not None:
        o.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def _time(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def interleave(configs: dict, rounds: int, reps: int) -> dict[str, float]:
    """configs: name -> zero-arg callable. Returns name -> median ms per call."""
    for fn in configs.values():
        fn()  # warm-up
    times = {k: [] for k in configs}
    for _ in range(rounds):
        for k, fn in configs.items():
            times[k] += _time(fn, reps)
    return {k: statistics.median(v) for k, v in times.items()}


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


# ---------------------------------------------------------------------------- ort


def cmd_ort(a) -> None:
    models = Path(a.models)
    det, brd = models / "detector.onnx", models / "breeds.onnx"
    x16 = _inputs(16, Scanner(models, threads=1).detector.preprocess)
    x1 = x16[:1]
    print(f"## ORT latency per call ({_load()})\n")
    # 1) detector vs breeds, batch 1 and 16, 1 and 2 threads
    print("| model | threads | batch 1: ms/call | batch 16: ms/photo |\n|---|---|---|---|")
    for name, path in (("detector.onnx", det), ("breeds.onnx", brd)):
        if not path.exists():
            continue
        for th in (1, 2):
            s = session(path, th)
            inp = s.get_inputs()[0].name
            r = interleave({"b1": lambda: s.run(None, {inp: x1}), "b16": lambda: s.run(None, {inp: x16})},
                           a.rounds, 3)
            print(f"| {name} | {th} | {r['b1']:.1f} | {r['b16'] / 16:.1f} |")
    # 2) graph optimisation levels, execution mode, spinning (detector, batch 1)
    for th in a.thread_list:
        _session_options(det, x1, th, a.rounds)
    # 3) the check that an optimised graph gives the same answer
    ref = session(det, 2, level="disable").run(None, {"image": x16})
    opt = session(det, 2, level="all").run(None, {"image": x16})
    print(f"\nmax |ALL - DISABLE| cat_probability: {np.abs(ref[0] - opt[0]).max():.2e}, "
          f"logits: {np.abs(ref[1] - opt[1]).max():.2e}")


def _session_options(det: Path, x1: np.ndarray, threads: int, rounds: int) -> None:
    print(f"\n| detector.onnx, batch 1, {threads} thread(s): session option | ms/call |\n|---|---|")
    variants = {
        "ORT_DISABLE_ALL": dict(level="disable"),
        "ORT_ENABLE_BASIC": dict(level="basic"),
        "ORT_ENABLE_EXTENDED": dict(level="extended"),
        "ORT_ENABLE_ALL (current)": dict(level="all"),
        "ORT_ENABLE_ALL + ORT_PARALLEL": dict(level="all", mode="parallel"),
        "ORT_ENABLE_ALL + no spinning": dict(level="all", spinning=False),
    }
    if threads == 1:  # no intra-op pool to spin or to run branches in parallel
        variants = {k: v for k, v in variants.items() if "PARALLEL" not in k and "spinning" not in k}
    sessions = {k: session(det, threads, **v) for k, v in variants.items()}
    fns = {k: (lambda s=s: s.run(None, {s.get_inputs()[0].name: x1})) for k, s in sessions.items()}
    for k, v in interleave(fns, rounds, 3).items():
        print(f"| {k} | {v:.1f} |")


# ---------------------------------------------------------------------------- decode


def _big_jpeg() -> bytes:
    """A 12-megapixel phone-sized JPEG made from a real photo (upscaled, quality 90)."""
    p = _photos(1)[0]
    img = decode_image(p.path.read_bytes()).resize((4032, 3024), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def cmd_decode(a) -> None:
    spec = Scanner(Path(a.models), threads=1).detector.preprocess
    hint = spec.decode_hint
    datas = [p.path.read_bytes() for p in _photos(a.photos)]
    big = _big_jpeg()
    print(f"## Decoding ({_load()}); draft hint = short side {hint}\n")
    print("| input | draft | decode ms | preprocess ms |\n|---|---|---|---|")
    for label, items in ((f"{len(datas)} Oxford test photos (median)", datas), ("12 MP JPEG (4032x3024)", [big])):
        for draft in (None, hint):
            dec, pre = [], []
            for _ in range(a.rounds):
                for d in items:
                    t0 = time.perf_counter()
                    img = decode_image(d, draft_short_side=draft)
                    t1 = time.perf_counter()
                    preprocess(img, spec)
                    t2 = time.perf_counter()
                    dec.append((t1 - t0) * 1000)
                    pre.append((t2 - t1) * 1000)
            print(f"| {label} | {'short side >= ' + str(draft) if draft else 'off'} | "
                  f"{statistics.median(dec):.1f} | {statistics.median(pre):.1f} |")
    n_scaled = sum(min(Image.open(io.BytesIO(d)).size) // hint >= 2 for d in datas)
    print(f"\nOxford photos the draft actually scales down (short side >= {2 * hint}): {n_scaled} of {len(datas)}")
    # does the draft change the answer? detector on the 12 MP photo with and without draft
    s = Scanner(Path(a.models), threads=2)
    r_full = s.detector(preprocess(decode_image(big), spec)[None])[0]
    r_draft = s.detector(preprocess(decode_image(big, draft_short_side=hint), spec)[None])[0]
    print(f"12 MP photo: cat probability without draft {r_full.cat_probability:.4f}, with draft "
          f"{r_draft.cat_probability:.4f}")


# ---------------------------------------------------------------------------- batch


def cmd_batch(a) -> None:
    datas = [p.path.read_bytes() for p in _photos(a.photos)]
    s = Scanner(Path(a.models), threads=a.threads)
    print(f"## scan_many batch size ({len(datas)} photos, {a.threads} threads, {_load()})\n")
    sizes = [1, 4, 8, 16, 32]
    fns = {b: (lambda b=b: list(s.scan_many(datas, batch_size=b))) for b in sizes}
    fns["scan() loop"] = lambda: [s.scan(d) for d in datas]
    res = interleave(fns, a.rounds, 1)
    print("| batch size | photos/s |\n|---|---|")
    for k, v in res.items():
        print(f"| {k} | {len(datas) / v * 1000:.1f} |")


# ---------------------------------------------------------------------------- arena


def cmd_arena(a) -> None:
    """Peak RSS and speed with ORT's CPU memory arena on/off, each in a fresh process."""
    if a.child is not None:
        import resource

        s = Scanner(Path(a.models), threads=2)
        if a.child != "on":
            for m in (s.detector.model, s.classifier.model if s.classifier else None):
                if m is not None:
                    o = ort.SessionOptions()
                    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                    o.enable_cpu_mem_arena = a.child not in ("off", "off+nopattern")
                    o.enable_mem_pattern = a.child not in ("nopattern", "off+nopattern")
                    o.intra_op_num_threads, o.inter_op_num_threads = 2, 1
                    m.session = ort.InferenceSession(str(m.path), o, providers=["CPUExecutionProvider"])
        datas = [p.path.read_bytes() for p in _photos(a.photos)]
        list(s.scan_many(datas[:16]))
        rss_warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t_b = min(_time(lambda: list(s.scan_many(datas, batch_size=16)), 2)) / len(datas)
        t_1 = statistics.median(_time(lambda: s.scan(datas[0]), 10))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"arena": a.child, "peak_rss_mb": round(rss), "peak_after_warmup_mb": round(rss_warm),"scan_ms": round(t_1, 1),
                          "batch16_ms_per_photo": round(t_b, 1)}))
        return
    print(f"## ORT CPU memory arena ({_load()})\n\n| arena | peak RSS MB | scan() ms | scan_many ms/photo |\n|---|---|---|---|")
    for mode in a.modes.split(",") * 2:
        out = subprocess.run([sys.executable, __file__, "arena", "--child", mode, "--models", a.models,
                              "--photos", str(a.photos)], capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {r['arena']} ({Path(a.models).name}) | {r['peak_rss_mb']} | {r['scan_ms']} | {r['batch16_ms_per_photo']} |")


# ---------------------------------------------------------------------------- threads


def scanner_with(models: Path, threads: int, spinning: bool | None = None) -> Scanner:
    """A Scanner whose two sessions are rebuilt with the given intra-op threads / spinning."""
    s = Scanner(models, threads=threads)
    for m in (s.detector.model, s.classifier.model if s.classifier else None):
        if m is not None:
            m.session = session(m.path, threads, spinning=spinning)
    return s


def cmd_threads(a) -> None:
    models = Path(a.models)
    datas = [p.path.read_bytes() for p in _photos(a.photos)]
    variants = {"1 thread": (1, None), "2 threads": (2, None), "2 threads, no spinning": (2, False),
                "1 thread, no spinning": (1, False)}
    scanners = {k: scanner_with(models, *v) for k, v in variants.items()}
    one = {k: (lambda s=s: [s.scan(d) for d in datas]) for k, s in scanners.items()}
    many = {k: (lambda s=s: list(s.scan_many(datas, batch_size=16))) for k, s in scanners.items()}
    r1 = interleave(one, a.rounds, 1)
    rm = interleave(many, a.rounds, 1)
    print(f"## Threads and spinning, {models.name} ({len(datas)} photos, {_load()})\n")
    print("| ORT session | scan() mean ms/photo | scan_many photos/s |\n|---|---|---|")
    for k in variants:
        print(f"| {k} | {r1[k] / len(datas):.1f} | {len(datas) / rm[k] * 1000:.1f} |")


# ---------------------------------------------------------------------------- fold


def cmd_fold(a) -> None:
    from quantize import fold_static_pads

    models, out = Path(a.models), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = Scanner(models, threads=1).detector.preprocess
    x = _inputs(16, spec)
    print(f"## Static pads folded into Conv ({_load()})\n")
    print("| model | threads | original b1 ms | folded b1 ms | original b16 ms/photo | folded b16 ms/photo | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for name in ("detector.onnx", "breeds.onnx"):
        if not (models / name).exists():
            continue
        dst = out / name.replace(".onnx", ".folded.onnx")
        info = fold_static_pads(models / name, dst)
        for th in a.thread_list:
            s0, s1 = session(models / name, th), session(dst, th)
            f = {"o1": lambda: s0.run(None, {"image": x[:1]}), "f1": lambda: s1.run(None, {"image": x[:1]}),
                 "o16": lambda: s0.run(None, {"image": x}), "f16": lambda: s1.run(None, {"image": x})}
            r = interleave(f, a.rounds, 3)
            diff = max(float(np.abs(u - v).max()) for u, v in zip(s0.run(None, {"image": x}), s1.run(None, {"image": x})))
            print(f"| {name} | {th} | {r['o1']:.2f} | {r['f1']:.2f} | {r['o16'] / 16:.2f} | {r['f16'] / 16:.2f} | {diff:.1e} |")
        print(f"<!-- {name}: {info} -->")


# ---------------------------------------------------------------------------- quant


def cmd_quant(a) -> None:
    from quantize import quantize_model

    models = Path(a.models)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = Scanner(models, threads=1).detector.preprocess
    x = _inputs(a.photos, spec)
    print(f"## int8 static quantization ({_load()})\n")
    print("| model | format | size MB | b1 ms | b16 ms/photo | agreement on test photos |\n|---|---|---|---|---|---|")
    for name in ("detector.onnx", "breeds.onnx"):
        src = models / name
        if not src.exists():
            continue
        fp = session(src, 2)
        inp = fp.get_inputs()[0].name
        base = fp.run(None, {inp: x})
        from quantize import fold_static_pads

        folded = out_dir / f"{src.stem}.folded.onnx"
        fold_static_pads(src, folded)
        rows = {"fp32": (src, fp), "fp32 folded": (folded, session(folded, 2))}
        for fmt in a.formats.split(","):
            for method in a.methods.split(","):
                tag = f"int8 {fmt} {method} calib {a.calib}"
                dst = out_dir / f"{src.stem}.int8-{fmt.lower()}-{method}-{a.calib}.onnx"
                if not dst.exists() or a.force:
                    t0 = time.time()
                    quantize_model(src, dst, data=resolve_data_root(None), calib_photos=a.calib, fmt=fmt,
                                   method=method)
                    print(f"<!-- quantized {name} as {tag} in {time.time() - t0:.0f} s -->")
                rows[tag] = (dst, session(dst, 2))
        fns = {}
        for k, (_, s) in rows.items():
            fns[k + "/b1"] = lambda s=s: s.run(None, {inp: x[:1]})
            fns[k + "/b16"] = lambda s=s: s.run(None, {inp: x[:16]})
        times = interleave(fns, a.rounds, 2)
        for k, (path, s) in rows.items():
            out = s.run(None, {inp: x})
            agree = _agreement(name, base, out)
            print(f"| {name} | {k} | {path.stat().st_size / 1e6:.1f} | {times[k + '/b1']:.1f} | "
                  f"{times[k + '/b16'] / 16:.1f} | {agree} |")


def cmd_quantacc(a) -> None:
    """Accuracy on the whole test split: detector is_cat vs species, breeds top-1 on test cats."""
    from quantize import fold_static_pads, quantize_model

    models, out_dir = Path(a.models), Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = read_split(resolve_data_root(None), "test", species=None)
    if a.photos and a.photos < len(items):
        items = select_photos(items, a.photos)
    spec = Scanner(models, threads=1).detector.preprocess
    x = np.stack([preprocess(decode_image(p.path.read_bytes(), draft_short_side=spec.decode_hint), spec)
                  for p in items])
    is_cat = np.array([p.species == "cat" for p in items])
    labels = np.array([p.label for p in items])
    print(f"## int8 accuracy on {len(items)} test photos ({is_cat.sum()} cats), calibration {a.calib} trainval photos\n")
    print("| model | variant | accuracy | change vs fp32 (points) | decisions changed |\n|---|---|---|---|---|")
    for name in ("detector.onnx", "breeds.onnx"):
        src = models / name
        if not src.exists():
            continue
        meta = json.loads(session(src, 1).get_modelmeta().custom_metadata_map["catscanner"])
        folded = out_dir / f"{src.stem}.folded.onnx"
        fold_static_pads(src, folded)
        variants = {"fp32 (pads folded)": folded}
        for tag, keep in (("int8, depthwise/first/last conv kept fp32", ("depthwise", "first", "last")),
                          ("int8, all convs", ())):
            dst = out_dir / f"{src.stem}.int8-{'all' if not keep else 'keep'}-{a.calib}.onnx"
            if not dst.exists() or a.force:
                quantize_model(src, dst, data=resolve_data_root(None), calib_photos=a.calib, keep_float=keep)
            variants[tag] = dst
        base = None
        for tag, path in variants.items():
            s = session(path, a.threads)
            outs = np.concatenate([s.run(None, {"image": x[i:i + 32]})[0] for i in range(0, len(x), 32)])
            if name == "detector.onnx":
                pred = outs >= float(meta["threshold"])
                acc = float(np.mean(pred == is_cat))
            else:
                pred = outs[is_cat].argmax(1)
                acc = float(np.mean(pred == labels[is_cat]))
            if base is None:
                base = (acc, pred)
            print(f"| {name} | {tag} | {acc:.2%} | {100 * (acc - base[0]):+.2f} | {int(np.sum(pred != base[1]))} |")


def _agreement(name: str, base: list, out: list) -> str:
    if name == "detector.onnx":
        thr = 0.5
        p0, p1 = base[0], out[0]
        top0, top1 = base[1].argmax(1), out[1].argmax(1)
        return (f"is_cat same {np.mean((p0 >= thr) == (p1 >= thr)):.1%}, max |dp(cat)| {np.abs(p0 - p1).max():.3f}, "
                f"ImageNet top-1 same {np.mean(top0 == top1):.1%}")
    l0, l1 = base[0], out[0]
    p0 = np.exp(l0 - l0.max(1, keepdims=True)); p0 /= p0.sum(1, keepdims=True)
    p1 = np.exp(l1 - l1.max(1, keepdims=True)); p1 /= p1.sum(1, keepdims=True)
    return f"top-1 breed same {np.mean(l0.argmax(1) == l1.argmax(1)):.1%}, max |dp| {np.abs(p0 - p1).max():.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["ort", "decode", "batch", "arena", "fold", "threads", "quant", "quantacc"])
    ap.add_argument("--models", default=str(default_model_dir()))
    ap.add_argument("--photos", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--thread-list", type=lambda v: [int(t) for t in v.split(",")], default=[1, 2])
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--modes", default="on,off,nopattern", help="arena: on, off, nopattern, off+nopattern")
    ap.add_argument("--out", default="/tmp/catscan-quant", help="quant: where the int8 models go")
    ap.add_argument("--formats", default="QDQ,QOperator", help="quant: QDQ and/or QOperator")
    ap.add_argument("--calib", type=int, default=64, help="quant: trainval photos for calibration")
    ap.add_argument("--methods", default="minmax", help="quant: minmax,entropy,percentile")
    ap.add_argument("--force", action="store_true", help="quant: re-quantize even if the file exists")
    a = ap.parse_args()
    {"ort": cmd_ort, "decode": cmd_decode, "batch": cmd_batch, "arena": cmd_arena, "fold": cmd_fold,
     "threads": cmd_threads, "quant": cmd_quant, "quantacc": cmd_quantacc}[a.what](a)


if __name__ == "__main__":
    main()
