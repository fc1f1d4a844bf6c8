"""The whole-frame cat detector at run time: the exported ONNX graph + decoding its outputs.

The graph (``training/detection.py``) looks at the whole photo, resized to the detector's
``max_pixels`` (75,000 for the shipped one) whatever its shape, and returns a heat map of cat centres
with a box size and offset per cell (CenterNet-style heads on the frozen ImageNet backbone; the
shipped file averages three), the ImageNet logits of the whole photo, and the ImageNet logits of
each stride-32 cell. Here peaks of the heat map become candidate boxes; each is scored by a logistic
rule on its peak and on the ImageNet class groups of the box (domestic cats, wild cats, Mexican
hairless, dogs); non-maximum suppression keeps one box per cat. A second look then runs the same
graph on a crop around each of the likeliest boxes (or reuses the first pass when the crop would
cover most of the photo) and scores it again: the calibrated probability. The crop's ImageNet
classes tell a house cat from a wild one (lynx, leopard, lion, tiger, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ModelError
from .breeds import softmax
from .contract import DetectionParams, Output
from .imagenet import CAT_CLASSES, CLASS_GROUPS, WILD_CAT_CLASSES, class_names
from .preprocessing import crop_square, preprocess_frame, preprocess_square
from .engine import Model
from .schema import ImageNetLabel



@dataclass(frozen=True)
class Candidate:
    """One box the detector considered, in photo pixels."""

    box: tuple[float, float, float, float]  # left, top, right, bottom
    probability: float  # calibrated probability that the box holds a cat (house or wild)
    wild_cat: str | None  # the wild-cat class it looks like, or None for a house cat


@dataclass(frozen=True)
class Detection:
    cats: list[Candidate]  # house cats at or above the threshold, most confident first
    wild_cat: str | None  # what the photo's wild cat looks like, when it shows one and no house cat
    best_probability: float  # highest calibrated probability of any house-cat candidate (when the second look
    # examined no box: the share of such photos that hold a cat; 0 without a second look)
    reference_rule_cat: bool  # ImageNet top-1 of the whole photo is one of 281-285
    top_labels: list[ImageNetLabel]


def reference_rule(logits: np.ndarray) -> np.ndarray:
    """The reference detector: top-1 ImageNet class is a domestic cat class (281-285)."""
    return np.isin(np.asarray(logits).argmax(axis=-1), CAT_CLASSES)


def top_labels(logits: np.ndarray, k: int = 5) -> list[ImageNetLabel]:
    p = softmax(logits)
    names = class_names()
    return [ImageNetLabel(int(i), names[i], round(float(p[i]), 4)) for i in np.argsort(-p)[:k]]


def _local_peaks(heat: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of cells that are the maximum of their 3x3 neighbourhood and >= threshold."""
    padded = np.pad(heat, 1, constant_values=-np.inf)
    h, w = heat.shape
    neighbourhood = np.max([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
    return np.nonzero((heat >= neighbourhood) & (heat >= threshold))


def suppress(boxes: np.ndarray, scores: np.ndarray, iou: float, contained: float) -> list[int]:
    """Greedy non-maximum suppression: most confident first; a box is dropped when it overlaps a
    kept one by ``iou``, lies ``contained`` inside it (or holds it), or either's centre lies in
    the other. Returns the kept indices."""
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-scores, kind="stable"):
        a = boxes[i]
        ok = True
        for j in keep:
            b = boxes[j]
            inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            centre_in = (b[0] <= (a[0] + a[2]) / 2 <= b[2] and b[1] <= (a[1] + a[3]) / 2 <= b[3]) or \
                        (a[0] <= (b[0] + b[2]) / 2 <= a[2] and a[1] <= (b[1] + b[3]) / 2 <= a[3])
            if centre_in or inter / (area[i] + area[j] - inter + 1e-9) > iou \
                    or inter / (min(area[i], area[j]) + 1e-9) > contained:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


def kept_boxes(boxes: np.ndarray, probs: np.ndarray, params: DetectionParams) -> list[int]:
    """Indices of the boxes non-maximum suppression keeps, most probable first, at most ``max_cats``."""
    return suppress(boxes, probs, params.nms_iou, params.nms_contained)[: params.max_cats] if len(boxes) else []


def reported_cats(house: list[Candidate], best: float, params: DetectionParams) -> list[Candidate]:
    """The house cats a photo reports: none unless its ``best`` probability reaches ``cat_threshold``,
    then every candidate at least ``box_threshold`` probable (the fit measures with this too)."""
    return [c for c in house if c.probability >= params.box_threshold] if best >= params.cat_threshold else []


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def group_log_masses(logits: np.ndarray) -> np.ndarray:
    """(..., 4) ImageNet log-probabilities of domestic cats, wild cats, Mexican hairless and dogs."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64))
    out = []
    for group in CLASS_GROUPS:
        g = logp[..., list(group)]
        top = g.max(axis=-1, keepdims=True)
        out.append((top + np.log(np.exp(g - top).sum(axis=-1, keepdims=True)))[..., 0])
    return np.stack(out, axis=-1)


def box_logits(imagenet_map: np.ndarray, box: np.ndarray, in_w: int, in_h: int) -> np.ndarray:
    """The ImageNet logits of a box (input pixels): the per-cell logits averaged over the cells it
    covers, which is the classifier applied to the box's average-pooled features (it is linear)."""
    _, h, w = imagenet_map.shape
    x0 = min(w - 1, int(box[0] / in_w * w))
    y0 = min(h - 1, int(box[1] / in_h * h))
    x1 = max(x0 + 1, int(np.ceil(box[2] / in_w * w)))
    y1 = max(y0 + 1, int(np.ceil(box[3] / in_h * h)))
    return imagenet_map[:, y0:y1, x0:x1].mean(axis=(1, 2))


def box_features(out: dict[str, np.ndarray], i: int, params: DetectionParams
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate boxes of photo ``i`` (input pixels), their score features (logit of the heat-map
    peak, the four class-group log-masses of the box, and the box classifier's logit when the
    model has one) and their ImageNet logits."""
    heat = out[Output.CAT_HEATMAP][i, 0]
    rows, cols = _local_peaks(heat, params.peak_threshold)
    s = params.stride
    in_h, in_w = heat.shape[0] * s, heat.shape[1] * s
    if len(rows) == 0:
        return np.zeros((0, 4)), np.zeros((0, len(params.coef))), np.zeros((0, 1000))
    size, offset = out[Output.BOX_SIZE][i], out[Output.BOX_OFFSET][i]
    cx = (cols + 0.5 + offset[0, rows, cols]) * s
    cy = (rows + 0.5 + offset[1, rows, cols]) * s
    bw, bh = np.exp(size[0, rows, cols]) * s, np.exp(size[1, rows, cols]) * s
    boxes = np.stack([np.clip(cx - bw / 2, 0, in_w), np.clip(cy - bh / 2, 0, in_h),
                      np.clip(cx + bw / 2, 0, in_w), np.clip(cy + bh / 2, 0, in_h)], axis=1)
    logits = np.stack([box_logits(out[Output.IMAGENET_MAP][i], b, in_w, in_h) for b in boxes])
    parts = [_logit(heat[rows, cols])[:, None], group_log_masses(logits)]
    if params.box_classifier is not None:
        parts.append(box_classifier_logit(logits, params)[:, None])
    return boxes, np.concatenate(parts, axis=1), logits


def box_classifier_logit(logits: np.ndarray, params: DetectionParams) -> np.ndarray:
    """The box classifier's cat-or-not logit from boxes' ImageNet logits (n, 1000)."""
    return log_softmax(np.asarray(logits, dtype=np.float64)) @ np.asarray(params.box_classifier) \
        + params.box_classifier_intercept


def _logistic(features: np.ndarray, coef, intercept: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(features @ np.asarray(coef) + intercept)))


def score(features: np.ndarray, params: DetectionParams) -> np.ndarray:
    """Calibrated probability that each candidate box holds a cat (house or wild)."""
    return _logistic(features, params.coef, params.intercept)


def wild_cat(logits: np.ndarray, wild_share: float, min_mass: float = 0.0) -> str | None:
    """The wild-cat class ImageNet logits say a picture shows, when wild cats (lynx, leopard,
    lion, tiger, ...) outweigh house cats, hold ``wild_share`` of the cat mass and at least
    ``min_mass`` of all; else None."""
    p = softmax(logits)
    domestic, wild = p[list(CAT_CLASSES)].sum(), p[list(WILD_CAT_CLASSES)].sum()
    if wild > domestic and wild >= wild_share * (domestic + wild) and wild >= min_mass:
        return class_names()[WILD_CAT_CLASSES[int(np.argmax(p[list(WILD_CAT_CLASSES)]))]]
    return None


def crop_peaks(crop_out: dict[str, np.ndarray]) -> np.ndarray:
    """The highest heat-map value of each crop: the head's evidence of a cat's centre in it."""
    heat = crop_out[Output.CAT_HEATMAP]
    return heat.reshape(len(heat), -1).max(axis=1)


def look_features(first: np.ndarray, logits: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """The second look's score features of boxes: their first-score features, the ImageNet
    class-group log-masses of what was looked at (``logits``) and the logit of its heat-map peak."""
    return np.concatenate([first, group_log_masses(logits), _logit(peaks)[:, None]], axis=1)


def look_share(box, size: tuple[float, float], margin: float) -> float:
    """The share of a photo of ``size`` (w, h) that the second look's crop of ``box`` covers (a
    square of ``margin`` x its longer side centred on it, ``preprocessing.crop_square``)."""
    x0, y0, side = crop_square(tuple(box), margin)
    w = min(size[0], x0 + side) - max(0.0, x0)
    h = min(size[1], y0 + side) - max(0.0, y0)
    return max(0.0, w) * max(0.0, h) / (size[0] * size[1])


def reuses_first_pass(boxes, size: tuple[float, float], params: DetectionParams) -> np.ndarray:
    """For each box (photo pixels, photo ``size`` (w, h)): does the second look reuse the first pass
    for it instead of cutting it out (its crop would cover at least ``params.look_reuse`` of the photo)?"""
    return np.array([params.look_reuse > 0 and look_share(b, size, params.look_margin) >= params.look_reuse
                     for b in boxes], bool)


def look_evidence(out: dict[str, np.ndarray], i: int, boxes: np.ndarray, size: tuple[float, float],
                  params: DetectionParams, look) -> tuple[np.ndarray, np.ndarray]:
    """(ImageNet logits (n, 1000), heat-map peak (n,)) of what the second look sees of each box
    (photo pixels, the photo ``size`` (w, h)): the graph's outputs on its crop, ``look(boxes)``; or,
    for a box whose crop covers at least ``params.look_reuse`` of the photo, the first pass's outputs
    on the whole photo (``out``, photo ``i``), which already shows that crop at about the look's
    resolution: no second run of the graph for a cat that fills the photo."""
    reuse = reuses_first_pass(boxes, size, params)
    logits, peaks = np.zeros((len(boxes), out[Output.IMAGENET_LOGITS].shape[-1])), np.zeros(len(boxes))
    if reuse.any():
        logits[reuse] = out[Output.IMAGENET_LOGITS][i]
        peaks[reuse] = out[Output.CAT_HEATMAP][i].max()
    if not reuse.all():
        crop_out = look(boxes[~reuse])
        logits[~reuse] = crop_out[Output.IMAGENET_LOGITS]
        peaks[~reuse] = crop_peaks(crop_out)
    return logits, peaks


def look_score(features: np.ndarray, params: DetectionParams) -> np.ndarray:
    """Calibrated probability from the second look's features."""
    return _logistic(features, params.look_coef, params.look_intercept)


def to_look_at(probs: np.ndarray, keep: list[int], floor: float, count: int) -> list[int]:
    """Of the kept boxes (most probable first), the ``count`` first whose score reaches ``floor``:
    those the second look examines."""
    return [k for k in keep if probs[k] >= floor][:count]


def candidates(out: dict[str, np.ndarray], i: int, params: DetectionParams,
               scale: tuple[float, float] = (1.0, 1.0), look=None) -> list[Candidate]:
    """Every box of photo ``i`` of a detector output after non-maximum suppression, most probable
    first, with its calibrated probability and wild-cat verdict; ``scale`` = photo pixels per
    input pixel (x, y). With a second look (``params.look_size``), ``look(boxes)`` takes boxes in
    photo pixels and returns the graph's outputs on their crops (boxes whose crop would cover most of
    the photo reuse the first pass instead: ``look_evidence``); only the boxes looked at remain."""
    if params.second_look and look is None:
        raise ValueError("This detector looks at each candidate box again: pass the decoded photos.")
    boxes, features, logits = box_features(out, i, params)
    if len(boxes) == 0:
        return []
    probs = score(features, params)
    keep = kept_boxes(boxes, probs, params)
    sx, sy = scale
    boxes = boxes * np.array([sx, sy, sx, sy])
    in_h, in_w = (n * params.stride for n in out[Output.CAT_HEATMAP].shape[2:])
    cat_like = np.ones(len(boxes), bool)  # without a second look, no heat-map bar for wild cats
    if params.second_look:
        keep = to_look_at(probs, keep, params.look_floor, params.look_count)
        if not keep:
            return []
        logits, peaks = look_evidence(out, i, boxes[keep], (in_w * sx, in_h * sy), params, look)
        probs = look_score(look_features(features[keep], logits, peaks), params)
        cat_like = peaks >= params.wild_min_peak
        boxes = boxes[keep]
        keep = [int(k) for k in np.argsort(-probs, kind="stable")]
    # a looked-at crop must also hold wild_min_mass of wild cats outright (ImageNet calls spotted
    # animals and patterns leopard with a small mass; the first pass's box logits are too coarse for
    # that) and look like a cat to the head (ImageNet calls a giraffe's coat leopard with a large mass)
    min_mass = params.wild_min_mass if params.second_look else 0.0
    return [Candidate(tuple(float(v) for v in boxes[k]), float(probs[k]),
                      wild_cat(logits[k], params.wild_share, min_mass) if cat_like[k] else None)
            for k in keep]


class CatDetector:
    """Runs the exported whole-frame detector on one preprocessed photo (1, 3, H, W)."""

    def __init__(self, model: Model):
        meta = model.meta
        if meta.kind != "detector" or meta.detection is None or not meta.preprocess.whole_frame:
            raise ModelError(f"{model.path} is not a whole-frame cat detector: export it with catscan fit-detector.")
        self.model = model
        self.preprocess = meta.preprocess
        self.params: DetectionParams = meta.detection

    def _whole_photo_rule(self, logits: np.ndarray, house: list[Candidate],
                          size: tuple[float, float]) -> list[Candidate]:
        """The photo-level rule on the whole photo's ImageNet classes, for the cats the boxes miss
        (mostly cats that fill the frame): one cat, in the best candidate box or the whole photo."""
        p = self.params
        prob = float(_logistic(group_log_masses(logits), p.photo_coef, p.photo_intercept))
        if prob < p.photo_threshold:
            return []
        box = house[0].box if house else (0.0, 0.0, *size)
        return [Candidate(box, prob, None)]

    def _looker(self, img: Image.Image, size: tuple[int, int]):
        """``look(boxes)`` for one photo: boxes in photo pixels -> the graph's outputs on their crops
        (cut from ``img``, which may be a draft-decoded, smaller copy of the photo)."""
        p = self.params
        kx, ky = img.width / size[0], img.height / size[1]

        def look(boxes: np.ndarray) -> dict[str, np.ndarray]:
            crops = [preprocess_square(img, (b[0] * kx, b[1] * ky, b[2] * kx, b[3] * ky), p.look_size,
                                       self.preprocess, p.look_margin) for b in boxes]
            return self.model.run(np.stack(crops))
        return look

    def examine(self, img: Image.Image) -> tuple[list[Candidate], dict[str, np.ndarray] | None]:
        """One decoded photo's candidate boxes (photo pixels, before any threshold) and the graph's
        outputs on the crops its second look cut out and ran (None when it ran none: no box looked
        at, or each one reusing the first pass, see ``look_evidence``): for measuring."""
        x = preprocess_frame(img, self.preprocess)[None]
        look, seen = self._looker(img, img.size), []

        def looked(boxes: np.ndarray) -> dict[str, np.ndarray]:
            seen.append(look(boxes))
            return seen[-1]
        found = candidates(self.model.run(x), 0, self.params, (img.width / x.shape[3], img.height / x.shape[2]), looked)
        return found, (seen[0] if seen else None)

    def __call__(self, batch: np.ndarray, photo_sizes: list[tuple[int, int]],
                 images: list[Image.Image] | None = None) -> list[Detection]:
        """Detections for a batch of same-size inputs; ``photo_sizes`` are the photos' (w, h) and
        ``images`` the decoded photos (needed when the detector takes a second look at its boxes)."""
        out = self.model.run(batch)
        in_h, in_w = batch.shape[2:]
        logits = out[Output.IMAGENET_LOGITS]
        ref = reference_rule(logits)
        peaks = crop_peaks(out)  # each photo's highest heat-map value, as for a crop
        results = []
        for i, (w, h) in enumerate(photo_sizes):
            look = self._looker(images[i], (w, h)) if images is not None else None
            found = candidates(out, i, self.params, (w / in_w, h / in_h), look)
            house = [c for c in found if c.wild_cat is None]
            # the second score is a house-cat score (it rewards the crop's house-cat classes), so a box
            # looked at and found wild counts whatever its probability; without a second look, a wild
            # box must reach the photo threshold
            wild = [c for c in found if c.wild_cat is not None
                    and (self.params.second_look or c.probability >= self.params.cat_threshold)]
            # the whole photo's ImageNet classes name a wild cat only where the head sees a cat's centre
            # somewhere (the same bar as a crop's): ImageNet calls giraffes leopard with most of its mass
            photo_wild = wild_cat(logits[i], self.params.wild_share, self.params.wild_min_mass) \
                if peaks[i] >= self.params.wild_min_peak else None
            # no box looked at: the share of such photos that hold a cat all the same
            nothing = self.params.look_none_probability if self.params.second_look and not found else 0.0
            best = max((c.probability for c in house), default=nothing)
            cats = reported_cats(house, best, self.params)
            if not cats and not wild and photo_wild is None:
                cats = self._whole_photo_rule(logits[i], house, (float(w), float(h)))
                best = max(best, cats[0].probability) if cats else best
            wild_name = wild[0].wild_cat if wild else photo_wild
            results.append(Detection(
                cats=cats,
                wild_cat=None if cats else wild_name,
                best_probability=best,
                reference_rule_cat=bool(ref[i]),
                top_labels=top_labels(logits[i]),
            ))
        return results
