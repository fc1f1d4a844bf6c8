"""The scanner: one object that loads the models once and answers "cat? where? which breeds?".

bytes/path/PIL image -> RGB image -> arrays -> detector + breed model -> :class:`ScanResult`.
Needs only NumPy, Pillow and ONNX Runtime (no PyTorch).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from .breeds import DEFAULT_BREED_THRESHOLD, BreedClassifier, BreedShare, breed_mix
from .detector import Box, CatDetector, ImageNetLabel, box_from_map
from .errors import CatScannerError, UnreadableFileError
from .imaging import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, SOURCE_SIZE, Preprocess, decode_image, preprocess
from .onnx_model import OnnxModel

ImageInput = bytes | str | Path | Image.Image

DETECTOR_FILE = "detector.onnx"
BREEDS_FILE = "breeds.onnx"
SCANNER_FILE = "scanner.onnx"  # detector + breeds on one shared backbone, preferred when present


def model_files(model_dir: str | Path | None = None) -> tuple[Path, Path | None]:
    """(detector model, breed model) in a model folder: both ``scanner.onnx`` when it exists,
    else ``detector.onnx`` and ``breeds.onnx`` (None when there is no breed model)."""
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    if (model_dir / SCANNER_FILE).exists():
        return model_dir / SCANNER_FILE, model_dir / SCANNER_FILE
    breeds = model_dir / BREEDS_FILE
    return model_dir / DETECTOR_FILE, breeds if breeds.exists() else None


def default_model_dir() -> Path:
    """The models shipped inside the package (``catscanner/models``)."""
    return Path(str(resources.files("catscanner.models")))


@dataclass(frozen=True)
class Timing:
    decode_ms: float
    detect_ms: float
    classify_ms: float
    total_ms: float

    def to_dict(self) -> dict:
        return {k: round(v, 2) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ScanError:
    code: str
    message: str

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class ScanResult:
    """What Cat Scanner found in one photo. ``error`` is set (and the rest empty) when it failed."""

    path: str | None
    is_cat: bool = False
    cat_probability: float = 0.0
    reference_rule_cat: bool = False
    imagenet_top: list[ImageNetLabel] = field(default_factory=list)
    box: Box | None = None
    breeds: list[BreedShare] = field(default_factory=list)
    breeds_note: str | None = None
    width: int | None = None
    height: int | None = None
    timing: Timing | None = None
    error: ScanError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def top_breed(self) -> BreedShare | None:
        return self.breeds[0] if self.breeds else None

    def to_dict(self) -> dict:
        """The JSON schema of ``catscan scan --json`` and ``POST /api/v1/scan`` (see README)."""
        return {
            "path": self.path,
            "is_cat": self.is_cat,
            "cat_probability": round(self.cat_probability, 4),
            "reference_rule_cat": self.reference_rule_cat,
            "box": self.box.to_dict() if self.box else None,
            "breeds": [b.to_dict() for b in self.breeds],
            "breeds_note": self.breeds_note,
            "imagenet_top": [label.to_dict() for label in self.imagenet_top],
            "width": self.width,
            "height": self.height,
            "timing_ms": self.timing.to_dict() if self.timing else None,
            "error": self.error.message if self.error else None,
            "error_code": self.error.code if self.error else None,
        }


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _crop_box(size: tuple[int, int], spec: Preprocess) -> tuple[float, float, float]:
    w, h = size
    side = min(w, h) * spec.crop_fraction
    return (w - side) / 2, (h - side) / 2, side


class Scanner:
    """Load once, scan many. ``Scanner().scan("cat.jpg").breeds``.

    ``threads`` caps ONNX Runtime's threads (default: all cores). ``breed_threshold`` is the
    smallest softmax share (0-1) a breed needs to be listed (default 0.05 = 5 %).
    """

    def __init__(self, model_dir: str | Path | None = None, *, threads: int | None = None,
                 breed_threshold: float = DEFAULT_BREED_THRESHOLD, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = DEFAULT_MIN_SIDE):
        threads = threads or os.cpu_count() or 1
        detector_path, breeds_path = model_files(model_dir)
        detector_model = OnnxModel(detector_path, threads)
        self.detector = CatDetector(detector_model)
        if breeds_path is None:
            self.classifier = None
        else:
            same = breeds_path == detector_path  # one graph answers both questions in one pass
            self.classifier = BreedClassifier(detector_model if same else OnnxModel(breeds_path, threads))
        self.breed_threshold = breed_threshold
        self.max_pixels, self.min_side = max_pixels, min_side
        specs = [self.detector.preprocess] + ([self.classifier.preprocess] if self.classifier else [])
        self._decode_hint = max(s.decode_hint for s in specs)

    # ---------------------------------------------------------------- decoding
    def load(self, image: ImageInput) -> Image.Image:
        """Decode any accepted input to an upright RGB image (raises ImageError subclasses)."""
        if isinstance(image, Image.Image):
            return image.convert("RGB") if image.mode != "RGB" else image
        if isinstance(image, (str, Path)):
            try:
                data = Path(image).read_bytes()
            except OSError as e:
                raise UnreadableFileError(f"Could not read {image}: {e.strerror or e}. Check the path.") from None
        else:
            data = bytes(image)
        return decode_image(data, max_pixels=self.max_pixels, min_side=self.min_side,
                            draft_short_side=self._decode_hint)

    # ---------------------------------------------------------------- scanning
    def scan(self, image: ImageInput, *, threshold: float | None = None, source: str | None = None) -> ScanResult:
        """Scan one photo. Raises a :class:`~catscanner.errors.CatScannerError` for bad input."""
        if source is None and isinstance(image, (str, Path)):
            source = str(image)
        t0 = time.perf_counter()
        img = self.load(image)
        decode_ms = _ms(t0)
        return self._scan_images([img], [source], [decode_ms], threshold)[0]

    def scan_many(self, images: Iterable[ImageInput], *, threshold: float | None = None,
                  batch_size: int = 8) -> Iterator[ScanResult]:
        """Scan photos in batches, yielding results in input order; a photo that fails yields a
        result with ``error`` set and the batch goes on."""
        pending: list[ScanResult | tuple[Image.Image, str | None, float]] = []
        n_images = 0
        for image in images:
            source = str(image) if isinstance(image, (str, Path)) else None
            t0 = time.perf_counter()
            try:
                pending.append((self.load(image), source, _ms(t0)))
                n_images += 1
            except CatScannerError as e:
                pending.append(error_result(source, e))
            if n_images >= batch_size:
                yield from self._flush(pending, threshold)
                pending, n_images = [], 0
        yield from self._flush(pending, threshold)

    def _flush(self, pending: list, threshold: float | None) -> Iterator[ScanResult]:
        decoded = [p for p in pending if not isinstance(p, ScanResult)]
        scanned = iter(self._scan_images(*zip(*decoded), threshold) if decoded else [])
        for p in pending:
            yield p if isinstance(p, ScanResult) else next(scanned)

    def _scan_images(self, imgs, sources, decode_ms, threshold: float | None) -> list[ScanResult]:
        threshold = self.breed_threshold if threshold is None else threshold
        t0 = time.perf_counter()
        det_spec = self.detector.preprocess
        det_batch = np.stack([preprocess(img, det_spec) for img in imgs])
        detections = self.detector(det_batch)
        detect_ms = _ms(t0) / len(imgs)

        t1 = time.perf_counter()
        cats = [i for i, d in enumerate(detections) if d.is_cat]
        probs: dict[int, np.ndarray] = {}
        if cats and self.classifier is not None and detections[0].breed_logits is not None:
            probs = {i: self.classifier.probabilities(detections[i].breed_logits) for i in cats}
        elif cats and self.classifier is not None:
            spec = self.classifier.preprocess
            if spec == det_spec:
                batch = det_batch[cats]
            else:
                batch = np.stack([preprocess(imgs[i], spec) for i in cats])
            probs = dict(zip(cats, self.classifier(batch)))
        classify_ms = _ms(t1) / max(1, len(cats)) if cats else 0.0

        results = []
        for i, (img, det) in enumerate(zip(imgs, detections)):
            width, height = img.info.get(SOURCE_SIZE, img.size)  # the photo's size, not the draft's
            if not det.is_cat:
                note = f"No cat detected (cat probability {det.cat_probability:.0%}), so no breeds are reported."
                breeds: list[BreedShare] = []
            elif self.classifier is None:
                note, breeds = "No breed model is installed.", []
            else:
                note, breeds = None, breed_mix(probs[i], threshold)
            c_ms = classify_ms if i in probs else 0.0
            results.append(ScanResult(
                path=sources[i],
                is_cat=det.is_cat,
                cat_probability=det.cat_probability,
                reference_rule_cat=det.reference_rule_cat,
                imagenet_top=det.top_labels,
                box=box_from_map(det.cat_map, _crop_box((width, height), det_spec), (width, height)) if det.is_cat else None,
                breeds=breeds,
                breeds_note=note,
                width=width,
                height=height,
                timing=Timing(decode_ms[i], detect_ms, c_ms, decode_ms[i] + detect_ms + c_ms),
            ))
        return results


def error_result(source: str | None, exc: CatScannerError) -> ScanResult:
    """A :class:`ScanResult` that reports why a photo could not be scanned."""
    return ScanResult(path=source, error=ScanError(exc.code, str(exc)))
