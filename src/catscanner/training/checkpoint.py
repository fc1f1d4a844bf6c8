"""Loading a trained breed checkpoint (``best.pt`` from ``catscan train``)."""

from __future__ import annotations

from pathlib import Path

import torch

from .backbones import BreedNet, create_backbone


def read_breed_checkpoint(path: str | Path) -> dict:
    """The contents of ``best.pt``: ``model`` (the weights, as :class:`BreedNet` takes them),
    ``config``, ``breeds``, ``preprocess``, ``temperature``, ``summary``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        old_imagenet_layer = ("backbone._fc.", "backbone.fc.")  # kept by checkpoints of early versions
        ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith(old_imagenet_layer)}
    return ckpt


def load_breed_checkpoint(path: str | Path) -> tuple[BreedNet, dict]:
    """A trained :class:`BreedNet` (eval mode) and its metadata from ``best.pt``."""
    ckpt = read_breed_checkpoint(path)
    cfg = ckpt["config"]
    model = BreedNet(create_backbone(cfg["backbone"]), len(ckpt["breeds"]), cfg["head"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt
