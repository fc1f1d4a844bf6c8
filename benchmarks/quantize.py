"""Measurement tools for two ONNX speed levers (needs the ``train`` extra: onnx).

* :func:`fold_static_pads` — folds run-time-computed ``Pad`` amounts of older exports into their
  ``Conv``s. The lever was measured with this tool; the product now gets the same graph at the
  source (``freeze_same_padding`` at export), so this only serves to re-measure old files.
* :func:`quantize_model` — int8 static quantization (ONNX Runtime), calibrated on ``trainval``
  photos preprocessed exactly as the model's own metadata says. Measured and NOT adopted: the
  accuracy holds (within 0.4 points) but end-to-end scans are no faster.

    python benchmarks/quantize.py fold  SRC.onnx DST.onnx
    python benchmarks/quantize.py int8  SRC.onnx DST.onnx [--data DIR] [--calib 64] [--format QDQ]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

META_KEY = "catscanner"


def _meta(proto) -> dict:
    return json.loads({p.key: p.value for p in proto.metadata_props}.get(META_KEY, "{}"))


def _set_meta(proto, meta: dict) -> None:
    for p in list(proto.metadata_props):
        if p.key == META_KEY:
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)


def _prune(graph) -> int:
    """Drop nodes whose outputs nothing uses (walking back from the graph outputs)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    removed = len(graph.node) - len(keep)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input}
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return removed


def fold_static_pads(src: str | Path, dst: str | Path) -> dict:
    """Replace run-time-computed ``Pad`` amounts by constants (the input's H and W are fixed).

    The pads are evaluated with ONNX Runtime at batch 1 and batch 2 and must agree (they may
    depend on H and W only). Returns counts of folded pads and removed nodes.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(src))
    g = proto.graph
    inits = {t.name for t in g.initializer}
    pads = [n for n in g.node if n.op_type == "Pad" and len(n.input) > 1 and n.input[1] not in inits]
    if not pads:
        onnx.save(proto, str(dst))
        return {"pads_folded": 0, "nodes_removed": 0}
    names = sorted({n.input[1] for n in pads})

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.INT64, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dims = [d if isinstance(d, int) else None for d in inp.shape]
    if any(d is None for d in dims[1:]):
        raise ValueError(f"{src}: input {inp.name} needs fixed C, H, W to fold pads (has {inp.shape})")
    values = []
    for batch in (1, 2):
        x = np.zeros([batch, *dims[1:]], np.float32)
        values.append(dict(zip(names, sess.run(names, {inp.name: x}))))
    for name in names:
        if not np.array_equal(values[0][name], values[1][name]):
            raise ValueError(f"{src}: pads {name} depend on the batch size; not folding")

    for name in names:
        g.initializer.append(numpy_helper.from_array(values[0][name].astype(np.int64), f"{name}__static"))
    for n in pads:
        n.input[1] = f"{n.input[1]}__static"
    fused = _fuse_pads_into_convs(g, {name: values[0][name] for name in names})
    removed = _prune(g)
    meta = _meta(proto)
    if meta:
        meta["runtime_optimisation"] = sorted({*meta.get("runtime_optimisation", []), "static_pads"})
        _set_meta(proto, meta)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dst))
    return {"pads_folded": len(pads), "pads_fused_into_conv": fused, "nodes_removed": removed}


def _const_value(g, name: str):
    """The value of ``name`` if it is an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper

    for t in g.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] == name:
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
    return None


def _fuse_pads_into_convs(g, pad_values: dict) -> int:
    """A zero ``Pad`` of H/W that feeds only one ``Conv`` becomes that Conv's (asymmetric) pads."""
    from onnx import helper

    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    fused = 0
    for pad in [n for n in g.node if n.op_type == "Pad"]:
        p = pad_values.get(pad.input[1].removesuffix("__static"))
        users = consumers.get(pad.output[0], [])
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        value = _const_value(g, pad.input[2]) if len(pad.input) > 2 and pad.input[2] else 0
        if (p is None or len(p) != 8 or len(users) != 1 or users[0].op_type != "Conv" or mode != b"constant"
                or value is None or np.any(np.asarray(value) != 0) or p[0] or p[1] or p[4] or p[5] or np.any(p < 0)):
            continue
        conv = users[0]
        attrs = {a.name: a for a in conv.attribute}
        if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET"):
            continue
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        new = [old[0] + int(p[2]), old[1] + int(p[3]), old[2] + int(p[6]), old[3] + int(p[7])]
        for a in list(conv.attribute):
            if a.name == "pads":
                conv.attribute.remove(a)
        conv.attribute.append(helper.make_attribute("pads", new))
        for k, name in enumerate(conv.input):
            if name == pad.output[0]:
                conv.input[k] = pad.input[0]
        fused += 1
    return fused


class _PhotoReader:
    """Calibration batches (batch 1) from real photos, preprocessed per the model's metadata."""

    def __init__(self, paths: list[Path], spec, input_name: str):
        self.paths, self.spec, self.input_name = list(paths), spec, input_name
        self.it = iter(self.paths)

    def get_next(self):
        from .imaging import decode_image, preprocess

        p = next(self.it, None)
        if p is None:
            return None
        img = decode_image(Path(p).read_bytes(), draft_short_side=self.spec.decode_hint)
        return {self.input_name: preprocess(img, self.spec)[None]}

    def rewind(self):
        self.it = iter(self.paths)


def calibration_photos(data: str | Path, n: int) -> list[Path]:
    """``n`` trainval photos (cats and dogs) spread evenly over the split (never test)."""
    from .bench import select_photos
    from .data import read_split

    return [p.path for p in select_photos(read_split(data, "trainval", species=None), n)]


def quantize_model(src: str | Path, dst: str | Path, *, data: str | Path, calib_photos: int = 64,
                   fmt: str = "QDQ", per_channel: bool = True, method: str = "minmax",
                   op_types: tuple[str, ...] | None = ("Conv",),
                   keep_float: tuple[str, ...] = ("depthwise", "first", "last")) -> Path:
    """int8 static quantization of ``src`` (folded pads first), calibrated on ``trainval`` photos.

    ``op_types`` limits what is quantized (default: convolutions, where the time goes; the heads,
    softmax and cat-probability rule stay float32). ``keep_float`` leaves these convolutions in
    float32: ``depthwise`` (grouped), ``first`` (stem) and ``last`` (the 1280-channel head conv
    that the logits and the cat map are read from); quantizing all convs of EfficientNet-Lite0
    changed the ImageNet top-1 of ~20 % of test photos (benchmarks/FINDINGS.md). ``fmt``: ``QDQ``
    or ``QOperator``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .imaging import Preprocess

    src, dst = Path(src), Path(dst)
    proto = onnx.load(str(src))
    meta = _meta(proto)
    spec = Preprocess.from_dict(meta["preprocess"])
    input_name = proto.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.onnx"
        fold_static_pads(src, folded)
        reader = _PhotoReader(calibration_photos(data, calib_photos), spec, input_name)
        convs = [n for n in onnx.load(str(folded)).graph.node if n.op_type == "Conv"]
        exclude = []
        if "depthwise" in keep_float:
            exclude += [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
        if "first" in keep_float and convs:
            exclude.append(convs[0].name)
        if "last" in keep_float and convs:
            exclude.append(convs[-1].name)
        quantize_static(
            str(folded), str(dst), reader,
            quant_format=QuantFormat.QDQ if fmt.upper() == "QDQ" else QuantFormat.QOperator,
            op_types_to_quantize=list(op_types) if op_types else None,
            per_channel=per_channel,
            nodes_to_exclude=sorted(set(exclude)),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
        )
    out = onnx.load(str(dst))
    meta["runtime_optimisation"] = sorted({*meta.get("runtime_optimisation", []), "static_pads"})
    meta["quantization"] = {"format": fmt, "per_channel": per_channel, "method": method,
                            "op_types": list(op_types) if op_types else "all", "kept_float": list(keep_float),
                            "calibration_photos": calib_photos,
                            "calibration_split": "trainval", "source": src.name}
    _set_meta(out, meta)
    onnx.save(out, str(dst))
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python benchmarks/quantize.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fold", help="fold run-time Pad amounts to constants (lossless)")
    f.add_argument("src")
    f.add_argument("dst")
    q = sub.add_parser("int8", help="int8 static quantization calibrated on trainval photos")
    q.add_argument("src")
    q.add_argument("dst")
    q.add_argument("--data", default=None)
    q.add_argument("--calib", type=int, default=64)
    q.add_argument("--format", default="QDQ", choices=["QDQ", "QOperator"])
    q.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    q.add_argument("--all-ops", action="store_true", help="quantize every supported op, not only Conv")
    q.add_argument("--quantize-all-convs", action="store_true",
                   help="also quantize depthwise, first and last convs (faster, much less accurate)")
    a = ap.parse_args(argv)
    if a.cmd == "fold":
        print(json.dumps(fold_static_pads(a.src, a.dst)))
    else:
        from .bench import resolve_data_root

        quantize_model(a.src, a.dst, data=resolve_data_root(a.data), calib_photos=a.calib, fmt=a.format,
                       method=a.method, op_types=None if a.all_ops else ("Conv",),
                       keep_float=() if a.quantize_all_convs else ("depthwise", "first", "last"))
        print(a.dst)


if __name__ == "__main__":
    main()
