"""Does the breed model read better at a larger input than it was trained at?

    python benchmarks/breed_test_size.py runs/cv_lite2_mixup_e7 [--k 5] [--sizes 260 272 284] [--threads 1]

Training crops a random 30-100 % of the photo and scales it to the model size, so a cat looks larger
to the model in training than in the centre crop it reads at test time (Touvron et al., "Fixing the
train-test resolution discrepancy", 2019). Reading the same centre crop at a larger size undoes part
of that. Measured by cross-validation: every finished fold's model (``foldI/best.pt`` of
``catscan cross-validate``) reads its own held-out fold at each size (saved as
``foldI/val_predictions_s<size>.npz``, reused by later runs); each size gets the full
cross-validation report (``OUT/cv_s<size>.json``: accuracy and macro-F1 mean +- sd, out-of-fold
temperature, cross-fitted ECE). The size is then also chosen per fold on the *other* folds
(cross-fitted), so the gain printed last was not tuned on the photos it is measured on.
Cost: the breed model's work grows with the pixels, (size / trained size) squared.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from catscanner.training.checkpoint import load_breed_checkpoint
from catscanner.training.config import TrainConfig
from catscanner.training.crossval import report
from catscanner.training.data import oxford_root
from catscanner.training.evaluate import breed_split
from catscanner.training.train import PhotoSet, predict_logits, train_preprocess


def read_folds_at(run: Path, sizes: list[int]) -> TrainConfig:
    """Every finished fold's held-out photos read at each size; returns the recipe."""
    cfg = None
    for ckpt_path in sorted(run.glob("fold*/best.pt")):
        todo = [s for s in sizes if not (ckpt_path.parent / f"val_predictions_s{s}.npz").exists()]
        model, ckpt = load_breed_checkpoint(ckpt_path)
        cfg = TrainConfig.from_stored(ckpt["config"])
        if not todo:
            continue
        model = model.to(memory_format=torch.channels_last)
        items = breed_split(oxford_root(), "val", ckpt["config"])
        trained = train_preprocess(cfg)
        photos = PhotoSet(items, replace(trained, size=max(todo)), f"{ckpt_path.parent.name} held-out")
        for size in todo:
            # the same centre crop of the photo, read at `size` pixels
            logits = predict_logits(model, photos, replace(trained, size=size))
            np.savez(ckpt_path.parent / f"val_predictions_s{size}.npz", logits=logits, labels=photos.labels,
                     names=np.array([it.name for it in items]))
            print(f"{ckpt_path.parent.name} size {size}: accuracy {np.mean(logits.argmax(1) == photos.labels):.4f}",
                  flush=True)
    if cfg is None:
        raise SystemExit(f"no finished fold (foldI/best.pt) in {run}")
    return replace(cfg, out=str(run), fold=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a catscan cross-validate --out folder")
    ap.add_argument("--k", type=int, default=5, help="the cross-validation's number of folds")
    ap.add_argument("--sizes", type=int, nargs="+", default=[260, 272, 284])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = read_folds_at(args.run, args.sizes)
    reports = {s: report(cfg, args.k, f"val_predictions_s{s}.npz", f"cv_s{s}") for s in args.sizes}
    base = args.sizes[0]
    for s, r in reports.items():
        print(f"size {s} (cost x{(s / base) ** 2:.2f}): accuracy {r['accuracy_mean']:.4f} +- {r['accuracy_std']:.4f}, "
              f"macro-F1 {r['macro_f1_mean']:.4f} +- {r['macro_f1_std']:.4f}, temperature {r['temperature']:.2f}, "
              f"cross-fitted ECE {r['ece_crossfit_temperature']:.3f} ({r['folds_done']} folds)")
    right = {s: {f["fold"]: f["accuracy"] for f in r["folds"]} for s, r in reports.items()}
    folds = sorted(right[base])
    picked = {f: max(args.sizes, key=lambda s: sum(right[s][g] for g in folds if g != f)) for f in folds}
    fitted = [right[picked[f]][f] for f in folds]
    print(f"size chosen on the other folds {picked}: accuracy {np.mean(fitted):.4f} +- {np.std(fitted, ddof=1):.4f}")


if __name__ == "__main__":
    main()
