"""The model contract: what an exported model file holds, and where the model files are.

Every model ships as one ONNX file whose ``catscanner`` metadata entry is a :class:`ModelMeta`
(JSON): its kind, its preprocessing, its thresholds. The exporter writes it with
:meth:`ModelMeta.to_json`, the runtime reads it with :meth:`ModelMeta.from_json`; nothing else
reads the raw metadata. Input and output tensor names are the constants below.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelError
from .preprocessing import Preprocess

META_KEY = "catscanner"  # the ONNX metadata_props key holding ModelMeta as JSON
INPUT = "image"  # (N, 3, H, W) float32, preprocessed as ModelMeta.preprocess says


class Output:
    """Names of the models' output tensors (H, W: the input's; s: the detection stride)."""

    CAT_HEATMAP = "cat_heatmap"  # (N, 1, H/s, W/s) probability that a cat's centre is in the cell
    BOX_SIZE = "box_size"  # (N, 2, H/s, W/s) log(box width / s), log(box height / s), input pixels
    BOX_OFFSET = "box_offset"  # (N, 2, H/s, W/s) the centre's offset from the cell centre, in cells
    IMAGENET_LOGITS = "imagenet_logits"  # (N, 1000) the ImageNet classifier on the whole input
    IMAGENET_MAP = "imagenet_map"  # (N, 1000, H/32, W/32) the ImageNet classifier on each stride-32 cell
    BREED_LOGITS = "breed_logits"  # (N, 12)


DETECTOR_OUTPUTS = (Output.CAT_HEATMAP, Output.BOX_SIZE, Output.BOX_OFFSET, Output.IMAGENET_LOGITS,
                    Output.IMAGENET_MAP)
BREED_OUTPUTS = (Output.BREED_LOGITS,)


@dataclass(frozen=True)
class DetectionParams:
    """How the detector's outputs become cats; fitted by ``catscan fit-detector``."""

    stride: int  # input pixels per heat-map cell
    peak_threshold: float  # heat-map peaks below this are not candidates
    # p(cat) of a candidate = sigmoid(coef . features + intercept), features = (logit of its heat-map
    # peak, ImageNet log-probability of domestic cats, wild cats, Mexican hairless, dogs in its box
    # [, the box classifier's logit when box_classifier is set])
    coef: tuple[float, ...]
    intercept: float
    cat_threshold: float  # a photo has a cat when its best candidate's calibrated probability is at least this
    box_threshold: float  # ... and then every candidate at least this probable is a cat of its own
    nms_iou: float = 0.4  # a box overlapping a more confident one this much (IoU) is dropped
    nms_contained: float = 0.7  # ... or lying this much inside it (intersection / smaller area)
    wild_share: float = 0.5  # a box is a wild cat when wild-cat classes hold this share of its cat mass
    # a photo without cat boxes shows a wild cat when ImageNet gives wild cats this much; a looked-at
    # crop called wild must hold this much too
    wild_min_mass: float = 0.2
    # a looked-at crop is a wild cat only when the head also sees a cat's centre in it: its heat-map
    # peak reaches this (0 = no such bar, as in files before it)
    wild_min_peak: float = 0.0
    # The whole-photo rule (v0.1's detector, fitted on trainval cats vs dogs): when no box reaches
    # the photo threshold but sigmoid(photo_coef . class-group log-masses of the whole photo +
    # photo_intercept) reaches photo_threshold, the photo's best box (or the whole photo) is a cat.
    photo_coef: tuple[float, float, float, float] = (2.306, -0.414, 0.571, -1.734)
    photo_intercept: float = 10.147
    photo_threshold: float = 0.775
    breed_crop_scale: float = 1.0  # breed crop: square of this x the box's shorter side
    max_cats: int = 20
    # A linear cat-or-not classifier on the box's 1,000 ImageNet log-probabilities (fitted on the
    # candidate boxes of the head's training photos); its logit is the score's sixth feature.
    box_classifier: tuple[float, ...] | None = None
    box_classifier_intercept: float = 0.0
    # The second look (0 = none): the ``look_count`` most probable boxes after suppression whose
    # first score reaches ``look_floor`` are cut out of the photo (a square of ``look_margin`` x the
    # box's longer side, see preprocessing.preprocess_square), resized to ``look_size`` x ``look_size`` and
    # run through the same graph; their probability is then sigmoid(look_coef . features +
    # look_intercept), features = (the first score's features, ImageNet log-probability of the four
    # class groups of the crop, logit of the crop's heat-map peak). Boxes not looked at are dropped.
    look_size: int = 0
    look_count: int = 0
    look_floor: float = 0.0
    look_margin: float = 1.15
    look_coef: tuple[float, ...] | None = None
    look_intercept: float = 0.0
    # the photo's cat_probability when the second look examines none of its boxes: the share of such
    # held-out fit photos that hold a cat (mostly small cats the first pass did not propose)
    look_none_probability: float = 0.0
    # a looked-at box whose crop would cover at least this share of the photo is not cut out and run
    # again: the first pass's outputs on the whole photo stand in for its crop's (0 = every box is cut out)
    look_reuse: float = 0.0

    def __post_init__(self) -> None:
        expected = 5 if self.box_classifier is None else 6
        if len(self.coef) != expected:
            raise ValueError(f"coef has {len(self.coef)} weights, the box score takes {expected} features")
        if self.box_classifier is not None and len(self.box_classifier) != 1000:
            raise ValueError(f"box_classifier has {len(self.box_classifier)} weights, not one per ImageNet class")
        if self.look_size and (self.look_coef is None or len(self.look_coef) != expected + 5 or self.look_count < 1):
            raise ValueError(f"a second look needs look_count >= 1 and {expected + 5} look_coef weights")

    @property
    def second_look(self) -> bool:
        return self.look_size > 0

    @classmethod
    def from_dict(cls, d: dict) -> "DetectionParams":
        d = dict(d)
        for key in ("coef", "photo_coef", "box_classifier", "look_coef"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

Kind = Literal["detector", "breeds"]


@dataclass(frozen=True)
class ModelMeta:
    """What the runtime needs to know about one exported model, stored inside the file."""

    kind: Kind
    backbone: str
    preprocess: Preprocess
    detection: DetectionParams | None = None  # detector: how its outputs become cats
    breeds: tuple[str, ...] = ()  # breed model: the classes of breed_logits, in order
    temperature: float = 1.0  # breed model: softmax temperature fitted for calibration
    details: dict[str, Any] = field(default_factory=dict)  # how it was made (for model cards), not read at run time

    def to_json(self) -> str:
        d = asdict(self)
        if d["detection"] is not None and d["detection"]["box_classifier"] is None:
            # without a box classifier, the file reads as it did before the option existed
            del d["detection"]["box_classifier"], d["detection"]["box_classifier_intercept"]
        if d["detection"] is not None and not d["detection"]["look_size"]:  # likewise without a second look
            for key in ("look_size", "look_count", "look_floor", "look_margin", "look_coef", "look_intercept",
                        "look_none_probability", "look_reuse"):
                del d["detection"][key]
        if d["detection"] is not None and not d["detection"].get("look_reuse"):  # likewise without reuse
            d["detection"].pop("look_reuse", None)
        d["preprocess"] = self.preprocess.to_dict()
        d["breeds"] = list(self.breeds)
        return json.dumps(d)

    @classmethod
    def from_json(cls, raw: str, source: str = "model") -> "ModelMeta":
        try:
            d = json.loads(raw)
            kind = d["kind"]
            if kind not in ("detector", "breeds"):
                raise ValueError(f"unknown kind {kind!r}")
            known = {"kind", "backbone", "preprocess", "detection", "breeds", "temperature", "details"}
            temperature = float(d.get("temperature", 1.0))
            if not 0.0 < temperature < float("inf"):  # a negative one would turn every breed mix upside down
                raise ValueError(f"temperature {temperature} is not a positive number")
            # Files exported before this contract kept their training details at the top level.
            details = {**{k: v for k, v in d.items() if k not in known}, **d.get("details", {})}
            return cls(
                kind=kind,
                backbone=str(d["backbone"]),
                preprocess=Preprocess.from_dict(d["preprocess"]),
                detection=None if d.get("detection") is None else DetectionParams.from_dict(d["detection"]),
                breeds=tuple(d.get("breeds", ())),
                temperature=temperature,
                details=details,
            )
        except (ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{source} has unreadable '{META_KEY}' metadata ({e}): re-export it.") from None


DETECTOR_FILE = "detector.onnx"
BREEDS_FILE = "breeds.onnx"


def default_model_dir() -> Path:
    """The models shipped inside the package (``catscanner/models``)."""
    return Path(str(resources.files("catscanner.models")))


@dataclass(frozen=True)
class ModelFiles:
    """The model files of one model folder; the only place that knows their names."""

    folder: Path
    detector: Path
    breeds: Path | None  # None: the folder has no breed model (scans then report no breeds)

    @classmethod
    def resolve(cls, model_dir: str | Path | None = None) -> "ModelFiles":
        folder = Path(model_dir) if model_dir else default_model_dir()
        if not folder.is_dir():
            raise ModelError(f"Model folder {folder} does not exist: pass a folder holding {DETECTOR_FILE}.")
        detector = folder / DETECTOR_FILE
        if not detector.is_file():
            raise ModelError(f"{folder} has no {DETECTOR_FILE}: pass a folder holding the exported models.")
        breeds = folder / BREEDS_FILE
        return cls(folder, detector, breeds if breeds.is_file() else None)
