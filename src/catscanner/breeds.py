"""The 12 cat breeds and the breed-mix rule (softmax shares >= a threshold, as percentages)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Fixed order: the alphabetical order of the Oxford-IIIT Pet cat breeds (its CLASS-ID order).
BREEDS: tuple[str, ...] = (
    "Abyssinian",
    "Bengal",
    "Birman",
    "Bombay",
    "British Shorthair",
    "Egyptian Mau",
    "Maine Coon",
    "Persian",
    "Ragdoll",
    "Russian Blue",
    "Siamese",
    "Sphynx",
)
DEFAULT_BREED_THRESHOLD = 0.05


@dataclass(frozen=True)
class BreedShare:
    breed: str
    percent: float  # 0-100, rounded to 0.1

    def to_dict(self) -> dict:
        return {"breed": self.breed, "percent": self.percent}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def breed_mix(probabilities: np.ndarray, threshold: float = DEFAULT_BREED_THRESHOLD) -> list[BreedShare]:
    """Every breed whose share is at least ``threshold`` (0-1), highest first, as percentages.

    Ties keep the fixed breed order. ``threshold`` 0 lists all 12 breeds.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (got {threshold}); 0.05 means 5 %.")
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape != (len(BREEDS),):
        raise ValueError(f"expected {len(BREEDS)} breed probabilities, got shape {p.shape}")
    order = sorted(range(len(BREEDS)), key=lambda i: (-p[i], i))
    return [BreedShare(BREEDS[i], round(float(p[i]) * 100, 1)) for i in order if p[i] >= threshold]


class BreedClassifier:
    """Runs the exported breed model (``breeds.onnx``, or ``scanner.onnx`` whose graph also holds
    the detector) on a preprocessed batch; returns calibrated probabilities."""

    def __init__(self, model):  # model: catscanner.onnx_model.OnnxModel
        self.model = model
        self.preprocess = model.preprocess
        self.temperature = float(model.meta.get("temperature", 1.0))
        if tuple(model.meta.get("breeds", BREEDS)) != BREEDS:
            raise ValueError(f"{model.path} was trained on other breeds: {model.meta.get('breeds')}")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.probabilities(self.model.run_named(batch)["breed_logits"])

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated breed probabilities from the model's logits."""
        return softmax(logits, self.temperature)
