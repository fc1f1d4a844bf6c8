"""The 12 cat breeds and the breed-mix rule (softmax shares >= a threshold, as percentages)."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from .contract import Output
from .engine import Model
from .schema import BreedShare

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
    """Runs the exported breed model (``breeds.onnx``) on a preprocessed batch; returns
    calibrated probabilities."""

    def __init__(self, model: Model):
        self.model = model
        self.preprocess = model.preprocess
        self.temperature = model.meta.temperature
        if model.meta.breeds != BREEDS:
            raise ModelError(f"{model.path} was trained on other breeds: {list(model.meta.breeds)}")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.probabilities(self.model.run(batch)[Output.BREED_LOGITS])

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated breed probabilities from the model's logits."""
        return softmax(logits, self.temperature)
