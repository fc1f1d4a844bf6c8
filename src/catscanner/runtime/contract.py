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
from .imaging import Preprocess

META_KEY = "catscanner"  # the ONNX metadata_props key holding ModelMeta as JSON
INPUT = "image"  # (N, 3, H, W) float32, preprocessed as ModelMeta.preprocess says


class Output:
    """Names of the models' output tensors."""

    CAT_PROBABILITY = "cat_probability"  # (N,) the detector rule on the whole input
    IMAGENET_LOGITS = "imagenet_logits"  # (N, 1000)
    CAT_MAP = "cat_map"  # (N, h, w) class-activation map of the domestic-cat classes
    BREED_LOGITS = "breed_logits"  # (N, 12)


DETECTOR_OUTPUTS = (Output.CAT_PROBABILITY, Output.IMAGENET_LOGITS, Output.CAT_MAP)
BREED_OUTPUTS = (Output.BREED_LOGITS,)

Kind = Literal["detector", "breeds"]


@dataclass(frozen=True)
class ModelMeta:
    """What the runtime needs to know about one exported model, stored inside the file."""

    kind: Kind
    backbone: str
    preprocess: Preprocess
    threshold: float | None = None  # detector: is_cat when cat_probability >= threshold
    breeds: tuple[str, ...] = ()  # breed model: the classes of breed_logits, in order
    temperature: float = 1.0  # breed model: softmax temperature fitted for calibration
    details: dict[str, Any] = field(default_factory=dict)  # how it was made (for model cards), not read at run time

    def to_json(self) -> str:
        d = asdict(self)
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
            known = {"kind", "backbone", "preprocess", "threshold", "breeds", "temperature", "details"}
            # Files exported before this contract kept their training details at the top level.
            details = {**{k: v for k, v in d.items() if k not in known}, **d.get("details", {})}
            return cls(
                kind=kind,
                backbone=str(d["backbone"]),
                preprocess=Preprocess.from_dict(d["preprocess"]),
                threshold=None if d.get("threshold") is None else float(d["threshold"]),
                breeds=tuple(d.get("breeds", ())),
                temperature=float(d.get("temperature", 1.0)),
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
