"""The cat detector at run time: an exported ONNX ImageNet model + a fitted rule.

The graph (see ``CatDetectorNet``) returns the cat probability from a logistic rule fitted on
``trainval``, the 1000 ImageNet logits (for the reference rule and the labels shown to users)
and a cat activation map, turned here into a bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .breeds import softmax
from .imagenet import CAT_CLASSES, class_names
from .onnx_model import OnnxModel


@dataclass(frozen=True)
class ImageNetLabel:
    index: int
    name: str
    probability: float

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "probability": round(self.probability, 4)}


@dataclass(frozen=True)
class Box:
    """Where the cat is, in pixels of the (upright) photo: left, top, right, bottom."""

    left: int
    top: int
    right: int
    bottom: int

    def to_dict(self) -> dict:
        return {"left": self.left, "top": self.top, "right": self.right, "bottom": self.bottom}


@dataclass(frozen=True)
class Detection:
    cat_probability: float
    is_cat: bool
    reference_rule_cat: bool  # top-1 ImageNet class is one of 281-285
    top_labels: list[ImageNetLabel]
    cat_map: np.ndarray  # (h, w) activation over the centre crop
    breed_logits: np.ndarray | None = None  # (12,) when the graph also holds the breed head


def reference_rule(logits: np.ndarray) -> np.ndarray:
    """The reference detector: top-1 ImageNet class is a domestic cat class (281-285)."""
    return np.isin(np.asarray(logits).argmax(axis=-1), CAT_CLASSES)


def top_labels(logits: np.ndarray, k: int = 5) -> list[ImageNetLabel]:
    p = softmax(logits)
    names = class_names()
    return [ImageNetLabel(int(i), names[i], float(p[i])) for i in np.argsort(-p)[:k]]


def box_from_map(cat_map: np.ndarray, crop: tuple[float, float, float], image_size: tuple[int, int],
                 level: float = 0.2) -> Box:
    """Bounding box of the region connected to the map's peak where the activation is at least
    ``level`` of the peak (20 %, as in the CAM paper, Zhou et al. 2016); ``crop`` = (left, top,
    side) of the centre crop the map covers, in photo pixels."""
    m = np.asarray(cat_map, dtype=np.float64)
    hi = m.max()
    mask = m >= level * hi if hi > 0 else m >= m.min() + level * (hi - m.min())
    h, w = m.shape
    start = np.unravel_index(int(m.argmax()), m.shape)
    seen = np.zeros_like(mask)
    stack = [start]
    seen[start] = True
    while stack:  # flood fill: the region connected to the peak
        y, x = stack.pop()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                stack.append((ny, nx))
    ys, xs = np.nonzero(seen)
    left, top, side = crop
    cell_w, cell_h = side / w, side / h
    W, H = image_size
    return Box(
        max(0, int(left + xs.min() * cell_w)), max(0, int(top + ys.min() * cell_h)),
        min(W, int(np.ceil(left + (xs.max() + 1) * cell_w))), min(H, int(np.ceil(top + (ys.max() + 1) * cell_h))),
    )


class CatDetector:
    """Runs the exported detector on a preprocessed batch (N, 3, S, S) float32."""

    def __init__(self, model: OnnxModel):
        self.model = model
        self.preprocess = model.preprocess
        self.threshold = float(model.meta["threshold"])

    def __call__(self, batch: np.ndarray) -> list[Detection]:
        out = self.model.run_named(batch)
        prob, logits, cat_map = out["cat_probability"], out["imagenet_logits"], out["cat_map"]
        breeds = out.get("breed_logits")
        ref = reference_rule(logits)
        return [
            Detection(float(prob[i]), bool(prob[i] >= self.threshold), bool(ref[i]), top_labels(logits[i]),
                      cat_map[i], None if breeds is None else breeds[i])
            for i in range(len(prob))
        ]
