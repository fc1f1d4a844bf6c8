"""int8 post-training quantization with NNCF for OpenVINO (issue 9 item 2): a measurement tool.

    pip install nncf openvino            # a throwaway venv will do; PYTHONPATH=src for catscanner
    python benchmarks/quantize_ov.py breeds   OUT.xml [--calib 300] [--models DIR] [--data DIR]
    python benchmarks/quantize_ov.py detector OUT.xml [--calib 300]

Calibrates on ``--calib`` photos of Oxford ``trainval`` (never ``test``), spread over the breeds
(cats only for the breed model; cats and dogs for the detector), read from the annotation lines,
preprocessed exactly as the model's own metadata says. Writes an OpenVINO IR (``OUT.xml`` +
``OUT.bin``, weights kept in f32) with the model's ``catscanner`` metadata, which
``catscanner.runtime.engine.OpenVinoModel`` loads (it reports precision ``int8``). Then measure it
with ``benchmarks/runtimes.py speed|accuracy --configs ort:f32 ov:f32 ov:int8 --int8 breeds=OUT.xml``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from catscanner.runtime.contract import META_KEY, ModelFiles
from catscanner.runtime.decoding import load_image
from catscanner.runtime.preprocessing import Preprocess, preprocess
from catscanner.training.data import oxford_root, read_split


def calibration_photos(n: int, species: str | None, data: str | None) -> list:
    """``n`` trainval photos, round-robin over the breeds (labels from the annotation lines)."""
    items = read_split(oxford_root(data), "trainval", species=species)
    by_breed: dict[str, list] = {}
    for it in items:
        by_breed.setdefault(it.breed, []).append(it)
    rng = np.random.default_rng(0)
    for v in by_breed.values():
        rng.shuffle(v)
    picked, i = [], 0
    while len(picked) < n and any(i < len(v) for v in by_breed.values()):
        picked += [v[i] for v in by_breed.values() if i < len(v)]
        i += 1
    return picked[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=["breeds", "detector"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--source", type=Path, default=None, help="the .onnx to quantize (default: the shipped one)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--calib", type=int, default=300)
    ap.add_argument("--preset", choices=["performance", "mixed"], default="performance")
    ap.add_argument("--ignore-types", nargs="*", default=[], metavar="OP",
                    help="OpenVINO op types left in float, e.g. MatMul (the breed head)")
    ap.add_argument("--full-bias-correction", action="store_true", help="NNCF's slower, exact bias correction")
    ap.add_argument("--no-bias-correction", action="store_true",
                    help="skip NNCF's fast bias correction (it fails on today's detector graph)")
    args = ap.parse_args()

    import nncf
    import openvino as ov

    files = ModelFiles.resolve(args.models)
    src = args.source or (files.breeds if args.model == "breeds" else files.detector)
    core = ov.Core()
    model = core.read_model(str(src))
    meta_raw = model.get_rt_info(["framework", META_KEY]).astype(str)
    spec = Preprocess.from_dict(json.loads(meta_raw)["preprocess"])
    photos = calibration_photos(args.calib, "cat" if args.model == "breeds" else None, args.data)
    print(f"calibrating {src.name} on {len(photos)} trainval photos "
          f"({len({p.breed for p in photos})} breeds)", flush=True)
    data = nncf.Dataset(photos, lambda it: preprocess(load_image(it.path), spec)[None])
    t = time.perf_counter()
    quantized = nncf.quantize(model, data, subset_size=len(photos), fast_bias_correction=not args.full_bias_correction,
                              ignored_scope=nncf.IgnoredScope(types=args.ignore_types) if args.ignore_types else None,
                              preset=nncf.QuantizationPreset.PERFORMANCE if args.preset == "performance"
                              else nncf.QuantizationPreset.MIXED,
                              advanced_parameters=nncf.AdvancedQuantizationParameters(
                                  disable_bias_correction=args.no_bias_correction))
    print(f"quantized in {time.perf_counter() - t:.0f} s", flush=True)
    meta = json.loads(meta_raw)
    meta.setdefault("details", {})["int8"] = {
        "tool": f"nncf {nncf.__version__}", "source": src.name, "calibration": f"{len(photos)} Oxford trainval photos",
        "preset": args.preset, "bias_correction": "none" if args.no_bias_correction else "full" if args.full_bias_correction else "fast",
        "float_op_types": args.ignore_types, "command": " ".join(sys.argv)}
    quantized.set_rt_info(json.dumps(meta), ["framework", META_KEY])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(args.out), compress_to_fp16=False)
    n_fq = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    print(f"wrote {args.out} ({n_fq} FakeQuantize nodes)")


if __name__ == "__main__":
    main()
