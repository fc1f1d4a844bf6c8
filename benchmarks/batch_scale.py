"""Throughput of ``catscan batch`` per engine (issue 11): photos/s for --engine local and for
--engine ray with 1 and 2 actors, on Oxford photos and on phone-sized photos.

    python benchmarks/batch_scale.py [--oxford 500] [--phone 100] [--work /tmp/catscan-batch-bench]

Phone-sized photos are made by upscaling Oxford photos to 4032x3024 JPEGs (quality 90) in the work
folder. Each configuration runs the real command in a subprocess and reads its summary line;
the load average before and after each run is printed beside it (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from catscanner.training.data import oxford_root  # noqa: E402

SUMMARY = re.compile(r"Scanned (\d+) photos in ([\d.]+) s: ([\d.]+) photos/s \(([\d.]+) photos/s from 10 % to 90 % "
                     r"done; first result after ([\d.]+) s\)")
CONFIGS = [
    ("local", ["--engine", "local"]),
    ("ray, 1 actor (2 threads)", ["--engine", "ray", "--actors", "1"]),
    ("ray, 1 actor (1 thread)", ["--engine", "ray", "--actors", "1", "--threads", "1"]),
    ("ray, 2 actors (1 thread each)", ["--engine", "ray", "--actors", "2"]),
]


def oxford_list(work: Path, n: int) -> Path:
    images = sorted((oxford_root() / "images").glob("*.jpg"))
    picked = images[:: max(1, len(images) // n)][:n]
    path = work / f"oxford{n}.txt"
    path.write_text("\n".join(map(str, picked)) + "\n")
    return path


def phone_folder(work: Path, n: int) -> Path:
    from PIL import Image

    folder = work / f"phone{n}"
    folder.mkdir(exist_ok=True)
    images = sorted((oxford_root() / "images").glob("*.jpg"))
    for src in images[:: max(1, len(images) // n)][:n]:
        out = folder / src.name
        if not out.exists():
            with Image.open(src) as im:
                im.convert("RGB").resize((4032, 3024), Image.BICUBIC).save(out, quality=90)
    return folder


def run(source: Path, args: list[str], work: Path) -> dict:
    out = work / f"out-{time.time_ns()}.jsonl"
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "catscanner", "batch", str(source), "--output", str(out), *args],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"})
    wall = time.perf_counter() - t0
    m = SUMMARY.search(proc.stderr)
    if not m:
        raise SystemExit(f"no summary in:\n{proc.stderr[-3000:]}")
    n, t, rate, steady, first = m.groups()
    out.unlink()
    return {"photos": int(n), "command_s": wall, "run_s": float(t), "rate": float(rate), "steady": float(steady),
            "first": float(first), "load": f"{load0:.1f} -> {os.getloadavg()[0]:.1f}"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--oxford", type=int, default=500)
    ap.add_argument("--phone", type=int, default=100)
    ap.add_argument("--work", type=Path, default=Path("/tmp/catscan-batch-bench"))
    ap.add_argument("--rounds", type=int, default=1, help="run every configuration this many times, interleaved")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    sets = [(f"{a.oxford} Oxford photos (~500x375)", oxford_list(a.work, a.oxford)),
            (f"{a.phone} phone-sized photos (4032x3024 JPEG)", phone_folder(a.work, a.phone))]
    print("| photos | engine | photos/s (whole command) | photos/s (10-90 %) | first result after | load avg before -> after |")
    print("|---|---|---|---|---|---|")
    for label, source in sets:
        for name, args in [c for _ in range(a.rounds) for c in CONFIGS]:
            r = run(source, args, a.work)
            print(f"| {label} | {name} | {r['rate']:.1f} | {r['steady']:.1f} | {r['first']:.1f} s | {r['load']} |",
                  flush=True)


if __name__ == "__main__":
    main()
