"""Export trained PyTorch models to ONNX, with their :class:`ModelMeta` inside, for the runtime."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from ..runtime.contract import BREED_OUTPUTS, DETECTOR_OUTPUTS, INPUT, META_KEY, ModelMeta
from ..runtime.imaging import Preprocess
from .backbones import BACKBONES, CatDetectorNet, freeze_same_padding, load_backbone
from .checkpoint import load_breed_checkpoint


def export_onnx(model: torch.nn.Module, meta: ModelMeta, out: Path, output_names: tuple[str, ...]) -> Path:
    """``model`` as an ONNX graph at ``meta.preprocess.size``, dynamic batch, ``meta`` inside."""
    out.parent.mkdir(parents=True, exist_ok=True)
    size = meta.preprocess.size
    model = freeze_same_padding(model.eval(), size)
    example = torch.zeros(1, 3, size, size)
    dynamic = {INPUT: {0: "batch"}, **{name: {0: "batch"} for name in output_names}}
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(out), input_names=[INPUT], output_names=list(output_names),
                          dynamic_axes=dynamic, opset_version=17, dynamo=False,
                          do_constant_folding=False)  # keep weight names; ORT folds BN at load
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


def export_detector(backbone: str, coef: list[float], intercept: float, threshold: float, out: Path,
                    details: dict | None = None) -> Path:
    """The ImageNet backbone + fitted cat rule + activation map as one ONNX graph."""
    net = CatDetectorNet(load_backbone(backbone), coef, intercept)
    meta = ModelMeta("detector", backbone, BACKBONES[backbone].preprocess, threshold=threshold,
                     details={"coef": coef, "intercept": intercept, **(details or {})})
    return export_onnx(net, meta, out, DETECTOR_OUTPUTS)


def export_breeds(checkpoint: str | Path, out: Path, details: dict | None = None) -> Path:
    """A trained breed checkpoint (``best.pt`` from ``catscan train``) as ONNX returning logits."""
    model, ckpt = load_breed_checkpoint(checkpoint)
    meta = ModelMeta("breeds", ckpt["config"]["backbone"], Preprocess.from_dict(ckpt["preprocess"]),
                     breeds=tuple(ckpt["breeds"]), temperature=ckpt["temperature"],
                     details={"config": ckpt["config"], "summary": ckpt["summary"], **(details or {})})
    return export_onnx(model, meta, out, BREED_OUTPUTS)
