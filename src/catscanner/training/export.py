"""Export trained PyTorch models to ONNX, with their :class:`ModelMeta` inside, for the runtime."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import onnx
import torch

from ..runtime.contract import BREED_OUTPUTS, INPUT, META_KEY, ModelMeta
from ..runtime.preprocessing import Preprocess
from .backbones import freeze_same_padding
from .checkpoint import load_breed_checkpoint


def export_onnx(model: torch.nn.Module, meta: ModelMeta, out: Path, output_names: tuple[str, ...],
                dynamic_size: bool = False) -> Path:
    """``model`` as an ONNX graph at ``meta.preprocess.size``, dynamic batch, ``meta`` inside.

    ``dynamic_size``: height and width are dynamic too. The TF-"same" padding frozen at export is
    the same for every input whose sides are multiples of 32 (the whole-frame detector's inputs)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    size = meta.preprocess.size
    model = freeze_same_padding(model.eval(), size)
    example = torch.zeros(1, 3, size, size)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    with torch.no_grad():
        outputs = model(example)
        ranks = [o.dim() for o in (outputs if isinstance(outputs, (tuple, list)) else (outputs,))]
        # each map output gets its own names for its sides (maps of stride 16 and 32 differ); left unnamed,
        # the exporter's shape inference once declared imagenet_map's height as "batch"
        dynamic = {INPUT: axes, **{name: {0: "batch", **({2: f"{name}_height", 3: f"{name}_width"}
                                                         if dynamic_size and rank == 4 else {})}
                                   for name, rank in zip(output_names, ranks)}}
        tmp = out.with_name(out.name + ".tmp")  # written whole, then renamed: a stopped export leaves the old file
        torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT], output_names=list(output_names),
                          dynamic_axes=dynamic, opset_version=17, dynamo=False,
                          do_constant_folding=False)  # keep weight names; ORT folds BN at load
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    os.replace(tmp, out)
    return out


def export_breeds(checkpoint: str | Path, out: Path, details: dict | None = None, read_size: int = 0) -> Path:
    """A trained breed checkpoint (``best.pt`` from ``catscan train``) as ONNX returning logits.

    ``read_size`` > 0: the model reads the same centre crop at this many pixels instead of its
    training size (a larger one undoes the zoom of random-resized-crop training; measured by
    ``benchmarks/breed_test_size.py``)."""
    model, ckpt = load_breed_checkpoint(checkpoint)
    spec = Preprocess.from_dict(ckpt["preprocess"])
    if read_size:
        spec = replace(spec, size=read_size)
    meta = ModelMeta("breeds", ckpt["config"]["backbone"], spec,
                     breeds=tuple(ckpt["breeds"]), temperature=ckpt["temperature"],
                     details={"config": ckpt["config"], "summary": ckpt["summary"], **(details or {})})
    return export_onnx(model, meta, out, BREED_OUTPUTS)
