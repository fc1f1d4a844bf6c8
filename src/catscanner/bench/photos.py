"""The benchmark's photo sets: the Oxford test photos as they are, and photos of every shape made
from real photos in a temporary folder (never in the repository or the shared data).

* ``oxford`` — Oxford-IIIT Pet ``test`` photos as stored (mostly ~500x375, cats and dogs, every
  breed), spread evenly over the split.
* ``640x480`` — Oxford ``test`` cat photos, centre-cropped to 4:3 and resized to 640x480.
* ``12mp`` — Oxford ``test`` cat photos, centre-cropped to 4:3 and resized to 4032x3024 (a
  12-megapixel phone photo).
* ``portrait`` — 9:16 (1080x1920): a cat-free COCO photo resized to cover the frame, an Oxford
  ``test`` cat photo pasted into its upper or lower third, 70 % of the width.
* ``panorama`` — 3:1 (6000x2000): a cat-free COCO photo resized to cover the frame, an Oxford
  ``test`` cat photo pasted at its left or right edge, 60 % of the height.

All are saved as JPEG quality 90 (4:2:0, baseline, like a phone). Photos made by enlarging a
small one are smoother than a camera's, so their JPEG decodes faster than a real photo of that
size would; sensor-like noise (Gaussian, sigma 6 grey levels; a 509-px tile repeated) is added to every
generated photo so that file sizes and decode work come near a real camera's: a 12 MP photo comes
out at ~2.5 MB (phone JPEGs: ~2-5 MB; without noise ~1 MB, and its draft decode ~35 % faster).
The sets and their mean file sizes are recorded in the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

QUALITY = 90
NOISE_SIGMA = 6.0


@dataclass(frozen=True)
class Shape:
    name: str
    size: tuple[int, int] | None  # (width, height); None: the photos as stored
    label: str  # for tables


SHAPES = (
    Shape("oxford", None, "Oxford test photo (~500x375)"),
    Shape("640x480", (640, 480), "640x480"),
    Shape("12mp", (4032, 3024), "12 MP 4032x3024"),
    Shape("panorama", (6000, 2000), "panorama 3:1 6000x2000"),
    Shape("portrait", (1080, 1920), "portrait 9:16 1080x1920"),
)
SHAPE_NAMES = tuple(s.name for s in SHAPES)


@dataclass(frozen=True)
class Photo:
    path: str
    is_cat: bool  # ground truth: a cat is in the photo
    width: int
    height: int
    bytes: int
    source: str  # what it was made from


def _spread(items: list, n: int) -> list:
    """``n`` items spread evenly over ``items`` (deterministic)."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def oxford_set(root: Path, n: int) -> list[Photo]:
    """``n`` Oxford test photos (cats and dogs), spread evenly over the split, as stored."""
    from PIL import Image

    from ..training.data import read_split

    out = []
    for it in _spread(read_split(root, "test", species=None), n):
        with Image.open(it.path) as im:
            w, h = im.size
        out.append(Photo(str(it.path), it.species == "cat", w, h, it.path.stat().st_size, it.name))
    return out


def _rgb(path: Path):
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def _cover(img, size: tuple[int, int]):
    """``img`` centre-cropped to the aspect of ``size`` and resized to it."""
    from PIL import Image

    w, h = img.size
    tw, th = size
    if w / h > tw / th:
        cw, ch = h * tw / th, h
    else:
        cw, ch = w, w * th / tw
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return img.resize(size, Image.Resampling.BICUBIC, box=box)


_NOISE_TILE = 509  # odd, so the tiled noise does not line up with the 8x8 JPEG blocks


def _save(img, path: Path, rng: np.random.Generator) -> int:
    """``img`` plus sensor-like noise (a tile of Gaussian noise repeated: fast on 12 MP), as JPEG."""
    from PIL import Image

    a = np.asarray(img, dtype=np.int16)
    tile = np.round(rng.normal(0.0, NOISE_SIGMA, (_NOISE_TILE, _NOISE_TILE, 3))).astype(np.int16)
    h, w = a.shape[:2]
    reps = (-(-h // _NOISE_TILE), -(-w // _NOISE_TILE), 1)
    a += np.tile(tile, reps)[:h, :w]
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=QUALITY)
    return path.stat().st_size


def _paste(scene, cat, shape: str, rng: np.random.Generator):
    """``cat`` (a whole Oxford photo) pasted into ``scene``: portrait in the upper or lower third,
    panorama at the left or right edge."""
    from PIL import Image

    W, H = scene.size
    if shape == "portrait":
        w = int(0.7 * W)
        h = int(w * cat.height / cat.width)
        x = int(rng.uniform(0, W - w))
        y = int(H / 6 - h / 2) if rng.random() < 0.5 else int(5 * H / 6 - h / 2)
        y = min(max(0, y), H - h)
    else:
        h = int(0.6 * H)
        w = int(h * cat.width / cat.height)
        x = 0 if rng.random() < 0.5 else W - w
        y = int(rng.uniform(0, H - h))
    scene.paste(cat.resize((w, h), Image.Resampling.BICUBIC), (x, y))
    return scene


def make_shape_sets(data_root: Path, out_dir: Path, n: int, seed: int = 0,
                    shapes: tuple[str, ...] = SHAPE_NAMES) -> dict[str, list[Photo]]:
    """The generated sets (every shape but ``oxford``), ``n`` photos each, written to ``out_dir``.

    ``data_root`` is the shared data folder (holding ``oxford-iiit-pet/`` and ``coco128/``). The
    cats are Oxford ``test`` cat photos spread over the split (a different one for each photo
    and shape); the scenes are coco128 photos without cats.
    """
    from ..training.data import read_coco, read_split

    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = [s for s in SHAPES if s.size is not None and s.name in shapes]
    cats = _spread(read_split(data_root / "oxford-iiit-pet", "test", species="cat"), n * max(1, len(wanted)))
    scenes = [c.path for c in read_coco(data_root / "coco128") if not c.cat_boxes]
    rng = np.random.default_rng(seed)
    sets: dict[str, list[Photo]] = {}
    for k, shape in enumerate(wanted):
        photos = []
        for i in range(n):
            cat_item = cats[(i * len(wanted) + k) % len(cats)]
            cat = _rgb(cat_item.path)
            if shape.name in ("portrait", "panorama"):
                scene_path = scenes[int(rng.integers(len(scenes)))]
                img = _paste(_cover(_rgb(scene_path), shape.size), cat, shape.name, rng)
                source = f"{cat_item.name} pasted into coco128/{scene_path.name}"
            else:
                img = _cover(cat, shape.size)
                source = f"{cat_item.name} resized"
            path = out_dir / f"{shape.name}_{i:03d}.jpg"
            size = _save(img, path, rng)
            photos.append(Photo(str(path), True, *shape.size, size, source))
        sets[shape.name] = photos
    return sets


def describe_set(name: str, photos: list[Photo]) -> dict:
    """What the report says about one photo set."""
    label = next(s.label for s in SHAPES if s.name == name)
    sizes = sorted({(p.width, p.height) for p in photos})
    return {
        "label": label,
        "photos": len(photos),
        "cats": sum(p.is_cat for p in photos),
        "sizes": [f"{w}x{h}" for w, h in sizes[:5]] + (["..."] if len(sizes) > 5 else []),
        "megapixels_mean": round(float(np.mean([p.width * p.height for p in photos])) / 1e6, 2),
        "file_kb_mean": round(float(np.mean([p.bytes for p in photos])) / 1024, 1),
        "made_from": [p.source for p in photos],
    }


def to_json(photos: list[Photo]) -> list[dict]:
    return [asdict(p) for p in photos]
