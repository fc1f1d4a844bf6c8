"""Scene sets for whole-frame cat detection, built from the shared data, deterministic by seed.

Oxford-IIIT Pet cat photos are pasted as whole rectangles (each photo resized) at random sizes
(15-90 % of the scene's short side) and positions, 1-3 per scene, into cat-free backgrounds of every
shape (1:1, 4:3, 3:4, 16:9, 9:16, 2:1, 3:1), together with distractor rectangles (Oxford dog photos
and crops of cat-free COCO photos) so that a rectangle edge alone never means "cat"; 15 % of the
scenes hold no cat at all. A report scene's background is one COCO photo; a fit scene's is a COCO or
an Oxford dog photo, or two of them side by side.

The split is strict:

* ``fit``    = Oxford ``trainval`` cats and dogs + the even-indexed half (by sorted name) of the
  cat-free COCO photos: the detector head is trained and its thresholds chosen on these;
* ``report`` = Oxford ``test`` cats and dogs + the odd-indexed half: only measured on.

``make_scene(pools, i)`` always gives the same scene for the same (split, i, seed).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..runtime.decoding import load_image
from .data import data_root, read_coco, read_split

ASPECTS = ((1, 1), (4, 3), (3, 4), (16, 9), (9, 16), (2, 1), (3, 1))  # width:height
SPLIT_SEED = {"fit": 1_000_003, "report": 2_000_003}
OXFORD_SPLIT = {"fit": "trainval", "report": "test"}
TURNS = (90, 270)  # degrees (counter-clockwise) a photo on its side is turned by
TURN_STREAM = 7  # the fourth number of the random stream that turns a scene's dog photos


@dataclass
class Obj:
    box: tuple[int, int, int, int]  # left, top, right, bottom in scene pixels
    label: int  # cats: breed index 0..11; distractors: -1
    name: str  # source photo name (plus crop for COCO distractors)
    kind: str  # "cat", "dog", "coco"


@dataclass
class Scene:
    image: Image.Image
    cats: list[Obj] = field(default_factory=list)
    distractors: list[Obj] = field(default_factory=list)
    key: str = ""
    background: list[str] = field(default_factory=list)  # the photos the background is cut from (names)

    @property
    def has_cat(self) -> bool:
        return bool(self.cats)


@functools.lru_cache(maxsize=4096)
def _load(path: Path) -> Image.Image:
    return load_image(path)


class Pools:
    """The photos one split draws from: Oxford cats (with breed labels from the annotation
    lines), Oxford dogs and half of the cat-free COCO photos; ``turned_dogs``: the share of the dog
    photos its scenes use (as background or distractor) that are turned on their side."""

    def __init__(self, split: str, data: str | Path | None = None, turned_dogs: float = 0.0):
        if split not in SPLIT_SEED:
            raise ValueError(f"split must be one of {tuple(SPLIT_SEED)} (got {split!r})")
        if not 0.0 <= turned_dogs <= 1.0:
            raise ValueError(f"turned_dogs must be a share from 0 to 1 (got {turned_dogs})")
        self.split = split
        self.turned_dogs = turned_dogs
        root = data_root(data)
        pets = read_split(root / "oxford-iiit-pet", OXFORD_SPLIT[split], species=None)
        self.cats = [(p.path, p.label) for p in pets if p.species == "cat"]
        self.dogs = [p.path for p in pets if p.species == "dog"]
        free = [c.path for c in read_coco(root / "coco128") if not c.cat_boxes]
        self.coco = free[0::2] if split == "fit" else free[1::2]


def _overlap_ok(box, others, max_frac=0.15) -> bool:
    for o in others:
        iw = min(box[2], o[2]) - max(box[0], o[0])
        ih = min(box[3], o[3]) - max(box[1], o[1])
        if iw > 0 and ih > 0:
            inter = iw * ih
            amin = min((box[2] - box[0]) * (box[3] - box[1]), (o[2] - o[0]) * (o[3] - o[1]))
            if inter / amin > max_frac:
                return False
    return True


def _place(rng, W, H, aspect, others, lo=0.15, hi=0.9):
    """A rectangle of the given aspect whose longer side is lo..hi (log-uniform) of the short scene side."""
    S = min(W, H)
    for attempt in range(60):
        u = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        if attempt > 30:
            u *= 0.6
        long_side = max(8, u * S)
        w, h = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
        w, h = int(round(min(w, W))), int(round(min(h, H)))
        x = int(rng.integers(0, W - w + 1))
        y = int(rng.integers(0, H - h + 1))
        if rng.random() < 0.25:  # touch a left/right edge
            x = 0 if rng.random() < 0.5 else W - w
        if rng.random() < 0.25:  # touch a top/bottom edge
            y = 0 if rng.random() < 0.5 else H - h
        box = (x, y, x + w, y + h)
        if _overlap_ok(box, others):
            return box
    return None


def _crop_aspect(rng, img: Image.Image, aspect: float, min_frac=0.6) -> Image.Image:
    w, h = img.size
    if w / h > aspect:
        ch, cw = h, h * aspect
    else:
        cw, ch = w, w / aspect
    f = rng.uniform(min_frac, 1.0)
    cw, ch = cw * f, ch * f
    x = rng.uniform(0, w - cw)
    y = rng.uniform(0, h - ch)
    return img.crop((int(x), int(y), int(x + cw), int(y + ch)))


def _fill(rng: np.random.Generator, img: Image.Image, w: int, h: int) -> Image.Image:
    """A random crop of ``img`` with the shape of w x h, resized to it."""
    return _crop_aspect(rng, img, w / h).resize((w, h), Image.BILINEAR)


def _scene_photo(pools: Pools, name: Path, turn_rng: np.random.Generator) -> Image.Image:
    """The photo ``name`` for a scene: a dog photo turned on its side with probability ``pools.turned_dogs``
    (drawn from ``turn_rng``, the scene's own stream for turns, so the scene's other draws stay as they were)."""
    img = _load(name)
    if pools.turned_dogs and name in pools.dogs and turn_rng.random() < pools.turned_dogs:
        img = img.rotate(TURNS[int(turn_rng.integers(len(TURNS)))], expand=True)
    return img


def _background(rng: np.random.Generator, pools: Pools, W: int, H: int,
                turn_rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """A cat-free W x H background and the names of the photos it is cut from.

    Report scenes: a crop of one cat-free COCO photo. Fit scenes draw from more (a head learns the
    backgrounds it is trained on; 62 COCO photos alone were too few): COCO photos (three in five)
    and Oxford dog photos, and one background in three is two of them side by side."""
    if pools.split == "report":
        name = pools.coco[int(rng.integers(len(pools.coco)))]
        return _fill(rng, _load(name), W, H), [name.stem]

    def source() -> Path:
        pool = pools.coco if rng.random() < 0.6 else pools.dogs
        return pool[int(rng.integers(len(pool)))]

    if rng.random() >= 1 / 3:
        name = source()
        return _fill(rng, _scene_photo(pools, name, turn_rng), W, H), [name.stem]
    bg, names = Image.new("RGB", (W, H)), []
    split_x = W >= H  # side by side along the longer side
    cut = int(rng.uniform(0.3, 0.7) * (W if split_x else H))
    for part in ((0, 0, cut, H), (cut, 0, W, H)) if split_x else ((0, 0, W, cut), (0, cut, W, H)):
        name = source()
        names.append(name.stem)
        bg.paste(_fill(rng, _scene_photo(pools, name, turn_rng), part[2] - part[0], part[3] - part[1]), part[:2])
    return bg, names


def make_scene(pools: Pools, index: int, seed: int = 0) -> Scene:
    rng = np.random.default_rng([SPLIT_SEED[pools.split], seed, index])
    aw, ah = ASPECTS[int(rng.integers(len(ASPECTS)))]
    long_side = int(rng.integers(1000, 1601))
    W, H = (long_side, int(round(long_side * ah / aw))) if aw >= ah else (int(round(long_side * aw / ah)), long_side)
    turn_rng = np.random.default_rng([SPLIT_SEED[pools.split], seed, index, TURN_STREAM])
    bg, bg_names = _background(rng, pools, W, H, turn_rng)
    if rng.random() < 0.5:
        bg = bg.transpose(Image.FLIP_LEFT_RIGHT)
    scene = Scene(bg, key=f"{pools.split}/{seed}/{index}", background=bg_names)
    cat_free = rng.random() < 0.15
    n_cats = 0 if cat_free else int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.20]))
    n_dis = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2])) if cat_free else int(rng.choice([0, 1, 2], p=[0.4, 0.35, 0.25]))
    placed: list[tuple] = []
    for _ in range(n_dis):  # distractors first, cats on top
        if rng.random() < 0.6:
            name = pools.dogs[int(rng.integers(len(pools.dogs)))]
            src, kind = _scene_photo(pools, name, turn_rng), "dog"
        else:
            name = pools.coco[int(rng.integers(len(pools.coco)))]
            src = _crop_aspect(rng, _load(name), float(np.exp(rng.uniform(np.log(0.6), np.log(1.7)))), 0.3)
            kind = "coco"
        box = _place(rng, W, H, src.width / src.height, placed)
        if box is None:
            continue
        scene.image.paste(src.resize((box[2] - box[0], box[3] - box[1]), Image.BILINEAR), box[:2])
        placed.append(box)
        scene.distractors.append(Obj(box, -1, Path(name).stem, kind))
    cat_idx = rng.choice(len(pools.cats), size=n_cats, replace=False) if n_cats else []
    for ci in cat_idx:
        name, breed = pools.cats[int(ci)]
        src = _load(name)
        if rng.random() < 0.5:
            src = src.transpose(Image.FLIP_LEFT_RIGHT)
        box = _place(rng, W, H, src.width / src.height, [c.box for c in scene.cats])
        # cats may cover distractors but must not hide each other (overlap <= 15 % of the smaller)
        if box is None:
            continue
        scene.image.paste(src.resize((box[2] - box[0], box[3] - box[1]), Image.BILINEAR), box[:2])
        scene.cats.append(Obj(box, breed, Path(name).stem, "cat"))
    # distractors that are now mostly hidden under a cat are no longer meaningful; drop them from the record
    scene.distractors = [d for d in scene.distractors if _overlap_ok(d.box, [c.box for c in scene.cats], 0.5)]
    return scene


# Whole photos turned on their side (a phone held sideways, a cat lying down): kinds "turned_cat"
# and "turned_dog", each photo turned by one of TURNS, chosen by its name.
TURNED = "turned_"


def turn_of(stem: str) -> int:
    """The degrees (counter-clockwise) the turned copy of photo ``stem`` is turned by: 90 or 270."""
    return TURNS[int(hashlib.sha1(stem.encode()).hexdigest(), 16) % len(TURNS)]


def _plain_sources(pools: Pools, kind: str) -> list[tuple[Path, int]]:
    """(path, breed) of the pools' whole photos of one kind (breed -1 for dogs and COCO)."""
    kind = kind.removeprefix(TURNED)
    return pools.cats if kind == "cat" else [(p, -1) for p in (pools.dogs if kind == "dog" else pools.coco)]


def _plain(kind: str, path: Path, breed: int) -> Scene:
    img = _load(path)
    if kind.startswith(TURNED):
        img = img.rotate(turn_of(path.stem), expand=True)
    cats = [Obj((0, 0, img.width, img.height), breed, path.stem, "cat")] if kind.removeprefix(TURNED) == "cat" else []
    return Scene(img, cats, key=f"plain/{path.stem}" if kind == "cat" else f"plain/{kind}/{path.stem}")


def plain_items(pools: Pools, kind: str):
    """Whole photos as scenes: kind "cat" (1 cat, box = whole photo), "dog" or "coco" (cat-free), and
    "turned_cat" / "turned_dog": the cat or dog photos turned on their side (:func:`turn_of`)."""
    for path, breed in _plain_sources(pools, kind):
        yield _plain(kind, path, breed)


def scene_by_key(pools: Pools, key: str) -> Scene:
    """The scene or plain photo a record's ``key`` names (``plain/<stem>``, ``plain/<kind>/<stem>``
    or ``<split>/<seed>/<index>``), rebuilt from the shared data."""
    parts = key.split("/")
    if parts[0] == "plain":
        kind, stem = ("cat", parts[1]) if len(parts) == 2 else (parts[1], parts[2])
        for path, breed in _plain_sources(pools, kind):
            if path.stem == stem:
                return _plain(kind, path, breed)
        raise KeyError(f"no {kind} photo {stem!r} in the {pools.split} pools")
    split, seed, index = parts
    if split != pools.split:
        raise KeyError(f"scene {key!r} is not of the {pools.split} split")
    return make_scene(pools, int(index), int(seed))
