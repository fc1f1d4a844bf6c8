"""Export trained PyTorch models to ONNX (with Cat Scanner metadata inside) for the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch

from .backbones import BACKBONES, CatDetectorNet, freeze_same_padding, load_backbone
from .onnx_model import META_KEY


def _export(model: torch.nn.Module, size: int, out: Path, output_names: list[str], meta: dict) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    model = freeze_same_padding(model.eval(), size)
    example = torch.zeros(1, 3, size, size)
    dynamic = {"image": {0: "batch"}, **{name: {0: "batch"} for name in output_names}}
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(out), input_names=["image"], output_names=output_names,
                          dynamic_axes=dynamic, opset_version=17, dynamo=False,
                          do_constant_folding=False)  # keep weight names; ORT folds BN at load
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


def export_detector(backbone: str, coef: list[float], intercept: float, threshold: float, out: Path,
                    extra: dict | None = None) -> Path:
    """The ImageNet backbone + fitted cat rule + activation map as one ONNX graph."""
    spec = BACKBONES[backbone].preprocess
    net = CatDetectorNet(load_backbone(backbone), coef, intercept)
    meta = {"kind": "detector", "backbone": backbone, "preprocess": spec.to_dict(), "coef": coef,
            "intercept": intercept, "threshold": threshold, **(extra or {})}
    return _export(net, spec.size, out, ["cat_probability", "imagenet_logits", "cat_map"], meta)


def export_breeds(checkpoint: str | Path, out: Path, extra: dict | None = None) -> Path:
    """A trained breed checkpoint (``best.pt`` from ``catscan train``) as ONNX returning logits."""
    from .train import load_breed_checkpoint

    model, ckpt = load_breed_checkpoint(checkpoint)
    meta = {"kind": "breeds", "backbone": ckpt["config"]["backbone"], "preprocess": ckpt["preprocess"],
            "breeds": ckpt["breeds"], "temperature": ckpt["temperature"], "config": ckpt["config"],
            "summary": ckpt["summary"], **(extra or {})}
    return _export(model, ckpt["preprocess"]["size"], out, ["breed_logits"], meta)


def export_scanner(checkpoint: str | Path, coef: list[float], intercept: float, threshold: float, out: Path,
                   extra: dict | None = None) -> Path:
    """A breed checkpoint trained with ``--distill`` (it kept its ImageNet layer) as ONE graph
    that answers both questions from one backbone pass: the cat rule, the cat map and the breeds."""
    from .train import load_breed_checkpoint

    model, ckpt = load_breed_checkpoint(checkpoint)
    if model.imagenet_fc is None:
        raise ValueError(f"{checkpoint} has no ImageNet layer: train it with --distill to share the backbone.")
    net = CatDetectorNet(model.backbone, coef, intercept, imagenet_fc=model.imagenet_fc, breed_head=model.head)
    meta = {"kind": "scanner", "backbone": ckpt["config"]["backbone"], "preprocess": ckpt["preprocess"],
            "coef": coef, "intercept": intercept, "threshold": threshold, "breeds": ckpt["breeds"],
            "temperature": ckpt["temperature"], "config": ckpt["config"], "summary": ckpt["summary"], **(extra or {})}
    outputs = ["cat_probability", "imagenet_logits", "cat_map", "breed_logits"]
    return _export(net, ckpt["preprocess"]["size"], out, outputs, meta)
