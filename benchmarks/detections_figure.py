"""docs/detections.png: the shipped detector on three example photos and on two report scenes with
several cats (Oxford `test` cats pasted into report-half COCO photos, never fitted on), each drawn as
``catscan scan --annotate`` draws it, side by side at one height.

    python benchmarks/detections_figure.py [--out docs/detections.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from catscanner.runtime.annotate import annotate
from catscanner.runtime.scanner import Scanner
from catscanner.training.scenes import Pools, make_scene

EXAMPLES = ("persian.jpg", "ragdoll.jpg", "street.jpg")
HEIGHT = 300


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/detections.png")
    ap.add_argument("--data", default=None, help="folder holding oxford-iiit-pet/ and coco128/")
    a = ap.parse_args()
    scanner = Scanner(None)
    examples = Path(__file__).resolve().parent.parent / "examples"
    photos = [scanner.load(examples / name) for name in EXAMPLES]
    pools = Pools("report", a.data)
    # the first wide (2:1 or wider) and the first tall report scenes with two or three cats
    scenes = [make_scene(pools, i) for i in range(60)]
    several = [s.image for s in scenes if len(s.cats) >= 2]
    wide = next(im for im in several if im.width >= 2 * im.height)
    tall = next(im for im in several if im.height > im.width)
    panels = []
    for img in photos[:2] + [wide, tall] + photos[2:]:
        drawn = annotate(img, scanner.scan(img))
        panels.append(drawn.resize((round(drawn.width * HEIGHT / drawn.height), HEIGHT), Image.Resampling.LANCZOS))
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 6 * (len(panels) - 1), HEIGHT), "white")
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 6
    sheet.save(a.out)
    print(f"wrote {a.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
