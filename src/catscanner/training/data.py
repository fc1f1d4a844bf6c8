"""Labelled photo sets: where the data lives, and how labels are read from it.

* :func:`data_root` — the one place that resolves the shared data folder (``$CATSCAN_DATA`` or
  ``../shared/data``).
* :func:`read_split` — the Oxford-IIIT Pet layout (``images/``, ``annotations/{trainval,test}.txt``).
  A line is ``Image CLASS-ID SPECIES BREED-ID``; labels come from those numbers, never from file names.
* :func:`read_photo_set` — any labelled cat photo set: Oxford layout, a folder per breed, or a CSV.
* :func:`read_coco` — a YOLO-layout COCO folder with its cat boxes.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CatScannerError
from ..runtime.breeds import BREEDS
from ..runtime.decoding import IMAGE_SUFFIXES, load_image
from ..runtime.preprocessing import Preprocess, preprocess
from .config import TrainConfig

SPLITS = ("trainval", "test")
DEFAULT_DATA = Path("../shared/data")

# The 37 Oxford-IIIT Pet classes in CLASS-ID order (1-37, alphabetical ignoring case).
OXFORD_CLASSES = (
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal",
    "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau", "english_cocker_spaniel",
    "english_setter", "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond",
    "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll",
    "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu", "Siamese", "Sphynx",
    "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier",
)


def data_root(path: str | Path | None = None) -> Path:
    """The shared data folder: ``path``, else ``$CATSCAN_DATA``, else ``../shared/data``.

    Accepts the folder holding ``oxford-iiit-pet/`` and ``coco128/``; given the Oxford folder
    itself it returns its parent.
    """
    root = Path(path or os.environ.get("CATSCAN_DATA") or DEFAULT_DATA)
    if (root / "annotations").is_dir() and not (root / "oxford-iiit-pet").is_dir():
        root = root.parent
    return root


def oxford_root(path: str | Path | None = None) -> Path:
    """The Oxford-IIIT Pet folder: ``path`` when it is one, else ``data_root() / oxford-iiit-pet``."""
    if path is not None and (Path(path) / "annotations").is_dir():
        return Path(path)
    return data_root(path) / "oxford-iiit-pet"


@dataclass(frozen=True)
class PetImage:
    name: str  # the photo's file name without extension
    path: Path
    species: str  # "cat" or "dog"
    breed: str  # "Abyssinian" ... for cats (BREEDS), Oxford's class name for dogs
    label: int  # index into BREEDS for cats, -1 for dogs


def _breed_key(breed: str) -> str:
    return breed.replace("_", " ").strip().lower()


_CAT_INDEX = {_breed_key(b): i for i, b in enumerate(BREEDS)}


def _find_image(folder: Path, name: str) -> Path:
    for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG"):
        if (p := folder / f"{name}{ext}").is_file():
            return p
    return folder / f"{name}.jpg"


def read_split(root: str | Path, split: str = "trainval", species: str | None = "cat") -> list[PetImage]:
    """Photos of one split (``trainval`` or ``test``), cats only by default (``species=None``: all).

    The label comes from the annotation line: BREED-ID (1-12, the alphabetical order of the cat
    breeds) for cats; CLASS-ID (1-37) names dogs. File names are not read for labels.
    """
    root = Path(root)
    if split not in SPLITS:
        raise CatScannerError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    ann = root / "annotations" / f"{split}.txt"
    if not ann.is_file():
        raise CatScannerError(
            f"{ann} not found: --data must be a folder in the Oxford-IIIT Pet layout "
            "(images/, annotations/trainval.txt, annotations/test.txt)."
        )
    out, bad = [], []
    for n, line in enumerate(ann.read_text(encoding="utf-8-sig").splitlines(), 1):  # a byte-order mark is no name
        parts = line.split()
        if not parts or line.startswith("#"):
            continue
        try:
            name, class_id, sp_id, breed_id = parts[0], int(parts[1]), int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            bad.append(f"line {n}: {line!r} is not 'Image CLASS-ID SPECIES BREED-ID'")
            continue
        sp = "cat" if sp_id == 1 else "dog"
        if species and sp != species:
            continue
        if sp == "cat":
            if not 1 <= breed_id <= len(BREEDS):
                bad.append(f"line {n}: {name} has cat BREED-ID {breed_id} (must be 1-{len(BREEDS)})")
                continue
            label, breed = breed_id - 1, BREEDS[breed_id - 1]
        else:
            label = -1
            breed = OXFORD_CLASSES[class_id - 1] if 1 <= class_id <= len(OXFORD_CLASSES) else f"class {class_id}"
        out.append(PetImage(name, _find_image(root / "images", name), sp, breed, label))
    missing = [it.name for it in out if not it.path.is_file()]
    problems = bad + [f"{m}: no such photo in {root / 'images'}" for m in missing]
    if problems:
        raise CatScannerError(f"{ann} has {len(problems)} problem(s):\n  " + "\n  ".join(problems[:20])
                              + ("\n  ..." if len(problems) > 20 else ""))
    return out




def photo_set_name(data: str | Path, split: str) -> str:
    """What a photo set is called in report file names: ``split`` for the Oxford layout (or a model's
    ``val``), else the CSV's or folder's own name (so that it never overwrites the Oxford test report)."""
    data = Path(data)
    if split == "val" or (data / "annotations").is_dir():
        return split
    return data.stem or "photos"


def read_photo_set(data: str | Path, split: str = "test") -> list[PetImage]:
    """Labelled cat photos from any of three layouts:

    * the Oxford-IIIT Pet layout (``annotations/<split>.txt``; labels from its numbers);
    * a folder per breed: ``DATA/<Breed name>/**/*.jpg`` (``British Shorthair`` or ``British_Shorthair``;
      searched recursively, as ``catscan scan`` searches folders; macOS ``._*`` files skipped);
    * a CSV file with a header ``path,breed`` (paths relative to the CSV's folder).

    Unknown breed names and missing files are listed in one :class:`CatScannerError`.
    """
    data = Path(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        return _read_csv(data)
    if (data / "annotations").is_dir():
        return read_split(data, split)
    if not data.is_dir():
        raise CatScannerError(f"{data} is not a folder or a CSV file of labelled photos.")
    folders = sorted(p for p in data.iterdir() if p.is_dir())
    unknown = [p.name for p in folders if _breed_key(p.name) not in _CAT_INDEX]
    if unknown or not folders:
        raise CatScannerError(
            f"{data} is neither the Oxford layout (annotations/) nor a folder per breed: "
            + (f"unknown breed folders {unknown}. " if unknown else "it has no sub-folders. ")
            + f"Breeds: {', '.join(BREEDS)}."
        )
    out = []
    for folder in folders:
        label = _CAT_INDEX[_breed_key(folder.name)]
        for p in sorted(folder.rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("._"):
                out.append(PetImage(p.stem, p, "cat", BREEDS[label], label))
    return out


def _read_csv(path: Path) -> list[PetImage]:
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark; surrogateescape: non-UTF-8 names kept as bytes
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "breed"} <= set(rows[0]):
        raise CatScannerError(f"{path} must be a CSV with a header row 'path,breed' and one photo per row.")
    out, problems = [], []
    for n, row in enumerate(rows, 2):
        p = Path(row["path"])
        p = p if p.is_absolute() else path.parent / p
        label = _CAT_INDEX.get(_breed_key(row["breed"] or ""))
        if label is None:
            problems.append(f"row {n}: unknown breed {row['breed']!r}")
        elif not p.is_file():
            problems.append(f"row {n}: missing file {p}")
        else:
            out.append(PetImage(p.stem, p, "cat", BREEDS[label], label))
    if problems:
        raise CatScannerError(f"{path} has {len(problems)} problem(s) (breeds: {', '.join(BREEDS)}):\n  "
                              + "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else ""))
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


def stratified_folds(items: list[PetImage], k: int, seed: int = 0) -> list[list[PetImage]]:
    """``items`` dealt into ``k`` folds, every breed spread evenly (fold sizes differ by at most one
    photo per breed)."""
    if k < 2:
        raise CatScannerError(f"Cross-validation needs at least 2 folds, not {k}.")
    rng = np.random.default_rng(seed)
    folds: list[list[PetImage]] = [[] for _ in range(k)]
    by_label: dict[int, list[PetImage]] = {}
    for it in items:
        by_label.setdefault(it.label, []).append(it)
    dealt = 0
    for label in sorted(by_label):
        group = by_label[label]
        for i in rng.permutation(len(group)):
            folds[dealt % k].append(group[i])
            dealt += 1
    return folds


def training_items(cfg: TrainConfig) -> tuple[list[PetImage], list[PetImage]]:
    """(training photos, validation photos) as the config asks: ``--photos``, then a k-fold or a
    stratified hold-out (or no validation set at all)."""
    if cfg.photos not in ("trainval", "all"):
        raise CatScannerError(f"--photos must be trainval or all, not {cfg.photos!r}")
    if cfg.keep not in ("best", "last"):
        raise CatScannerError(f"--keep must be best or last, not {cfg.keep!r}")
    root = oxford_root(cfg.data or None)
    items = read_split(root, "trainval") + (read_split(root, "test") if cfg.photos == "all" else [])
    if cfg.folds:
        if not 0 <= cfg.fold < cfg.folds:
            raise CatScannerError(f"--fold must be in 0..{cfg.folds - 1}, not {cfg.fold}")
        folds = stratified_folds(items, cfg.folds, cfg.val_seed)
        return [it for i, f in enumerate(folds) if i != cfg.fold for it in f], folds[cfg.fold]
    if cfg.val_fraction > 0:
        return stratified_holdout(items, cfg.val_fraction, cfg.val_seed)
    return items, []


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


def map_batches(paths: list[Path], spec: Preprocess, run, desc: str, batch_size: int = 32) -> list:
    """``run(batch)`` on the photos at ``paths``, preprocessed as ``spec`` says, ``batch_size``
    at a time, with a progress bar; returns the list of ``run``'s results, one per batch."""
    from ..progress import progress_bar

    return [run(np.stack([_preprocessed(p, spec) for p in paths[i:i + batch_size]]))
            for i in progress_bar(range(0, len(paths), batch_size), desc=desc)]


def _preprocessed(path: Path, spec: Preprocess) -> np.ndarray:
    """One photo as the model takes it; a photo that cannot be read is named in the error (a labelled
    set is measured whole or not at all: a photo left out would change what the numbers mean)."""
    try:
        return preprocess(load_image(path), spec)
    except CatScannerError as e:
        raise type(e)(f"{path}: {e} Fix or remove this photo from the labelled set.") from None
