"""The Oxford-IIIT Pet layout, cats only: ``images/`` and ``annotations/{list,trainval,test}.txt``.

A line is ``Image CLASS-ID SPECIES BREED-ID`` (species 1 = cat, 2 = dog). Works unchanged on
``../shared/data/oxford-iiit-pet`` and on the official full download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .breeds import BREEDS
from .errors import CatScannerError

SPLITS = ("trainval", "test")


@dataclass(frozen=True)
class PetImage:
    name: str  # e.g. "Abyssinian_1"
    path: Path
    species: str  # "cat" or "dog"
    breed: str  # e.g. "Abyssinian" or "american_bulldog"
    label: int  # index into BREEDS for cats, -1 for dogs


def _breed_from_name(name: str) -> str:
    return name.rsplit("_", 1)[0]


def _breed_key(breed: str) -> str:
    return breed.replace(" ", "_").lower()


_CAT_INDEX = {_breed_key(b): i for i, b in enumerate(BREEDS)}


def read_split(root: str | Path, split: str = "trainval", species: str | None = "cat") -> list[PetImage]:
    """Photos of one split (``trainval`` or ``test``), cats only by default (``species=None``: all)."""
    root = Path(root)
    if split not in SPLITS:
        raise CatScannerError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    ann = root / "annotations" / f"{split}.txt"
    if not ann.is_file():
        raise CatScannerError(
            f"{ann} not found: --data must be a folder in the Oxford-IIIT Pet layout "
            "(images/, annotations/trainval.txt, annotations/test.txt)."
        )
    out = []
    for line in ann.read_text().splitlines():
        parts = line.split()
        if not parts or line.startswith("#"):
            continue
        name, sp = parts[0], "cat" if parts[2] == "1" else "dog"
        if species and sp != species:
            continue
        breed = _breed_from_name(name)
        label = _CAT_INDEX.get(_breed_key(breed), -1) if sp == "cat" else -1
        if sp == "cat" and label < 0:
            raise CatScannerError(f"{ann}: {name} is a cat of unknown breed {breed!r}.")
        out.append(PetImage(name, root / "images" / f"{name}.jpg", sp, breed, label))
    return out


def stratified_holdout(items: list[PetImage], fraction: float, seed: int = 0) -> tuple[list[PetImage], list[PetImage]]:
    """Split ``items`` into (train, validation), ``fraction`` of every breed going to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    by_label: dict[int, list[PetImage]] = {}
    for it in items:
        by_label.setdefault(it.label, []).append(it)
    for label in sorted(by_label):
        group = by_label[label]
        idx = rng.permutation(len(group))
        n_val = int(round(len(group) * fraction))
        val += [group[i] for i in idx[:n_val]]
        train += [group[i] for i in idx[n_val:]]
    return train, val


COCO_CAT = 15  # the cat class in COCO's 80-class YOLO labels


@dataclass(frozen=True)
class CocoPhoto:
    path: Path
    cat_boxes: list[tuple[float, float, float, float]]  # YOLO (x centre, y centre, width, height), 0-1


def read_coco(root: str | Path) -> list[CocoPhoto]:
    """The photos of a YOLO-layout COCO folder (``images/train``, ``labels/train``) with their cat boxes."""
    root = Path(root)
    photos = []
    for img in sorted((root / "images" / "train").iterdir()):
        lab = root / "labels" / "train" / f"{img.stem}.txt"
        rows = [r.split() for r in lab.read_text().splitlines()] if lab.exists() else []
        boxes = [tuple(map(float, r[1:5])) for r in rows if r[:1] == [str(COCO_CAT)]]
        photos.append(CocoPhoto(img, boxes))
    return photos
