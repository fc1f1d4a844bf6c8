"""Loading a trained breed checkpoint (``best.pt`` from ``catscan train``)."""

from __future__ import annotations

from pathlib import Path

import torch

from .backbones import BreedNet, create_backbone


def load_breed_checkpoint(path: str | Path) -> tuple[BreedNet, dict]:
    """A trained :class:`BreedNet` (eval mode) and its metadata from ``best.pt``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = ckpt["config"]
    model = BreedNet(create_backbone(cfg["backbone"]), len(ckpt["breeds"]), cfg["head"])
    old_imagenet_layer = ("backbone._fc.", "backbone.fc.")  # kept by checkpoints of early versions
    model.load_state_dict({k: v for k, v in ckpt["model"].items() if not k.startswith(old_imagenet_layer)})
    return model.eval(), ckpt
