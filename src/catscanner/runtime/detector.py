"""The cat detector at run time: an exported ONNX ImageNet model + a fitted rule.

The graph (see ``CatDetectorNet``) returns the cat probability from a logistic rule fitted on
``trainval``, the 1000 ImageNet logits (for the reference rule and the labels shown to users)
and a cat activation map, turned here into a bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
from .breeds import softmax
from .contract import Output
from .imagenet import CAT_CLASSES, class_names
from .onnx_model import OnnxModel
from .schema import Box, ImageNetLabel


@dataclass(frozen=True)
class Detection:
    cat_probability: float
    is_cat: bool
    reference_rule_cat: bool  # top-1 ImageNet class is one of 281-285
    top_labels: list[ImageNetLabel]
    cat_map: np.ndarray  # (h, w) activation over the centre crop


def reference_rule(logits: np.ndarray) -> np.ndarray:
    """The reference detector: top-1 ImageNet class is a domestic cat class (281-285)."""
    return np.isin(np.asarray(logits).argmax(axis=-1), CAT_CLASSES)


def top_labels(logits: np.ndarray, k: int = 5) -> list[ImageNetLabel]:
    p = softmax(logits)
    names = class_names()
    return [ImageNetLabel(int(i), names[i], round(float(p[i]), 4)) for i in np.argsort(-p)[:k]]


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
        if model.meta.kind != "detector" or model.meta.threshold is None:
            raise ModelError(f"{model.path} is not a cat detector (kind {model.meta.kind!r}).")
        self.threshold = model.meta.threshold

    def __call__(self, batch: np.ndarray) -> list[Detection]:
        out = self.model.run(batch)
        prob, logits, cat_map = out[Output.CAT_PROBABILITY], out[Output.IMAGENET_LOGITS], out[Output.CAT_MAP]
        ref = reference_rule(logits)
        return [
            Detection(float(prob[i]), bool(prob[i] >= self.threshold), bool(ref[i]), top_labels(logits[i]), cat_map[i])
            for i in range(len(prob))
        ]
