"""Cats on their side: the fit side's held-out cats (and dogs), upright and turned by 90 and 270 degrees,
through a detector file (a fit's four-fifths head: ``catscan fit-detector ... --first-head FILE``).

    python benchmarks/turned_cats.py runs/detector_v10/first/detector.onnx [more detector files]

For each file and turn: Oxford ``trainval`` cat photos the head never saw (``held_out_cat``: the fit's
held-out fifth) called cat, reported with more than one cat (one cat per photo, bar a few photos of
two), and the held-out fifth's dog photos called cat. A photo taken sideways, or a cat lying on its
side, should not split into a head and a body. Nothing of the report side is read, unless
``--split test``: every Oxford ``test`` cat and dog (the report side: to measure a chosen detector once,
never to choose one).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from catscanner.progress import progress_bar
from catscanner.runtime.scanner import Scanner
from catscanner.training.data import read_split
from catscanner.training.fit_detector import held_out_cat

TURNS = (0, 90, 270)


def scanner_for(detector: Path) -> Scanner:
    """A scanner of ``detector`` alone (no breed model: the breeds do not matter here)."""
    folder = Path(tempfile.mkdtemp())
    (folder / "detector.onnx").symlink_to(detector.resolve())
    return Scanner(folder, threads=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("detectors", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/oxford-iiit-pet"))
    ap.add_argument("--split", choices=("trainval", "test"), default="trainval",
                    help="trainval: the fit's held-out fifth (default); test: the report side, every photo")
    args = ap.parse_args()
    pets = read_split(args.data, args.split, species=None)
    if args.split == "test":
        cats = [p for p in pets if p.species == "cat"]
        dogs = [p for p in pets if p.species == "dog"]
    else:
        cats = [p for p in pets if p.species == "cat" and held_out_cat(p.path.stem)]
        dogs = [p for p in pets if p.species == "dog"][::5]  # cat-free photos go to the held-out side one in five
    print(f"{args.split}: {len(cats)} cat photos, {len(dogs)} dog photos")
    for detector in args.detectors:
        scanner = scanner_for(detector)
        for turn in TURNS:
            called = several = dog_alarms = 0
            for p in progress_bar(cats + dogs, desc=f"{detector.parent.name} turned {turn}"):
                img = Image.open(p.path).convert("RGB")
                r = scanner.scan(img.rotate(turn, expand=True) if turn else img)
                if p.species == "cat":
                    called += r.is_cat
                    several += len(r.cats) > 1
                else:
                    dog_alarms += r.is_cat
            print(f"{detector}  turned {turn:3d}: cats called cat {called}/{len(cats)}, reported with more than "
                  f"one cat {several}/{len(cats)}; dogs called cat {dog_alarms}/{len(dogs)}", flush=True)


if __name__ == "__main__":
    main()
