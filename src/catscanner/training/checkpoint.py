"""Loading a trained breed checkpoint (``best.pt`` from ``catscan train``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CatScannerError
from .backbones import BreedNet, create_backbone

BEST_KEYS = ("model", "config", "breeds", "preprocess", "temperature")  # what train() stores in best.pt


def read_breed_checkpoint(path: str | Path) -> dict:
    """The contents of ``best.pt``: ``model`` (the weights, as :class:`BreedNet` takes them),
    ``config``, ``breeds``, ``preprocess``, ``temperature``, ``summary``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # missing, truncated or not a PyTorch file: OSError, RuntimeError, pickle errors
        raise CatScannerError(f"{path} cannot be read as a breed checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no details'}): pass the best.pt of a "
                              "catscan train run.") from None
    missing = [k for k in BEST_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CatScannerError(f"{path} is not the best.pt of a catscan train run (no {', '.join(missing)}; "
                              "checkpoint.pt is the resumable state, not a finished model).")
    if isinstance(ckpt.get("model"), dict):
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
