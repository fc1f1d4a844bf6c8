"""Detection metrics on scenes with known cat boxes.

A predicted box *finds* a cat when its centre lies inside the cat's true box and at least half of
the predicted box lies inside it (intersection / predicted area >= 0.5). Each predicted box finds
at most one cat and each cat is found at most once (most confident box first). A predicted box
that finds no cat is an *extra* box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import binomtest

Box = tuple[float, float, float, float]  # left, top, right, bottom


def finds(pred: Box, true: Box) -> bool:
    cx, cy = (pred[0] + pred[2]) / 2, (pred[1] + pred[3]) / 2
    if not (true[0] <= cx <= true[2] and true[1] <= cy <= true[3]):
        return False
    iw = max(0.0, min(pred[2], true[2]) - max(pred[0], true[0]))
    ih = max(0.0, min(pred[3], true[3]) - max(pred[1], true[1]))
    return iw * ih / max(1e-9, (pred[2] - pred[0]) * (pred[3] - pred[1])) >= 0.5


def iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(pred: list[Box], scores: list[float], true: list[Box]) -> tuple[list[int], int]:
    """(for each true cat the index of the predicted box that found it or -1, number of extra boxes)."""
    found = [-1] * len(true)
    used = 0
    for pi in np.argsort(-np.asarray(scores, dtype=float)) if len(pred) else []:
        best, best_iou = -1, -1.0
        for ci, t in enumerate(true):
            if found[ci] < 0 and finds(pred[pi], t) and iou(pred[pi], t) > best_iou:
                best, best_iou = ci, iou(pred[pi], t)
        if best >= 0:
            found[best] = int(pi)
            used += 1
    return found, len(pred) - used


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``successes`` of ``n`` (None when ``n`` is 0): how far
    a rate measured on a few hundred photos can be from the rate on photos like them."""
    if n == 0:
        return None
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return round(float(ci.low), 4), round(float(ci.high), 4)


def expected_calibration_error(probs, labels, bins: int = 10) -> float:
    """ECE of binary probabilities over ``bins`` equal-width bins."""
    probs, labels = np.asarray(probs, float), np.asarray(labels, float)
    idx = np.clip(np.digitize(probs, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    return float(sum((idx == b).mean() * abs(probs[idx == b].mean() - labels[idx == b].mean())
                     for b in range(bins) if (idx == b).any()))


def reliability(probs, labels, bins: int = 10) -> list[dict]:
    """Per bin: mean predicted probability, observed frequency, count (the reliability diagram)."""
    probs, labels = np.asarray(probs, float), np.asarray(labels, float)
    idx = np.clip(np.digitize(probs, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    return [{"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "n": int((idx == b).sum()),
             "mean_probability": round(float(probs[idx == b].mean()), 4),
             "frequency": round(float(labels[idx == b].mean()), 4)} for b in range(bins) if (idx == b).any()]


@dataclass
class PhotoOutcome:
    has_cat: bool
    n_cats: int
    probability: float  # the photo's cat probability
    is_cat: bool
    n_found: int = 0
    n_extra: int = 0
    breed_right: list[bool] = field(default_factory=list)  # per found cat: top breed right?


def summarize(outcomes: list[PhotoOutcome]) -> dict:
    """The headline numbers of a photo set."""
    cat = [o for o in outcomes if o.has_cat]
    free = [o for o in outcomes if not o.has_cat]
    breeds = [b for o in outcomes for b in o.breed_right]
    out = {
        "photos": len(outcomes), "photos_with_cat": len(cat), "cat_free_photos": len(free),
        "is_cat_on_cat_photos": float(np.mean([o.is_cat for o in cat])) if cat else None,
        "cat_photos_called_cat": int(sum(o.is_cat for o in cat)),
        "cats": sum(o.n_cats for o in cat),
        "cats_found": sum(o.n_found for o in cat) / max(1, sum(o.n_cats for o in cat)) if cat else None,
        "extra_boxes_per_photo": float(np.mean([o.n_extra for o in outcomes])) if outcomes else None,
        "false_alarm_photos": float(np.mean([o.is_cat for o in free])) if free else None,
        "false_alarms": int(sum(o.is_cat for o in free)),
        "breed_top1_of_found": float(np.mean(breeds)) if breeds else None,
        "found_cats_breed_checked": len(breeds),
        "ece": expected_calibration_error([o.probability for o in outcomes], [o.has_cat for o in outcomes]),
    }
    return {k: (round(float(v), 4) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}
