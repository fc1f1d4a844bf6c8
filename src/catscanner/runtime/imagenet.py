"""ImageNet-1k class names and the class groups the cat detector reads."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

CAT_CLASSES = (281, 282, 283, 284, 285)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
WILD_CAT_CLASSES = tuple(range(286, 294))  # cougar ... cheetah
DOG_CLASSES = tuple(range(151, 268))  # Chihuahua ... Mexican hairless (268, apart: where Sphynx cats land)
MEXICAN_HAIRLESS = 268
# The class groups the detector's box score reads, in this order.
CLASS_GROUPS = (CAT_CLASSES, WILD_CAT_CLASSES, (MEXICAN_HAIRLESS,), DOG_CLASSES)


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    text = resources.files("catscanner.models").joinpath("imagenet_classes.txt").read_text()
    names = tuple(line.strip().replace("_", " ") for line in text.splitlines() if line.strip())
    assert len(names) == 1000, len(names)
    return names
