"""A short real training run on real photos: loss goes down, checkpoints resume, export works."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (PyTorch)")

from catscanner.training.train import TrainConfig, train  # noqa: E402


def test_short_training_run_lowers_the_loss_and_resumes(oxford_dir, tmp_path):
    cfg = TrainConfig(data=str(oxford_dir), out=str(tmp_path / "run"), epochs=3, limit=36, batch_size=12,
                      lr_head=3e-3, lr_backbone=3e-4, warmup_epochs=0.3, threads=2, seed=1)
    best = train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    losses = [e["train_loss"] for e in metrics["epochs"]]
    assert len(losses) == 3
    assert losses[-1] < losses[0] - 0.1, losses
    assert (tmp_path / "run" / "training_curves.png").stat().st_size > 10_000
    assert 0.3 <= metrics["summary"]["temperature"] <= 5.0

    # resuming from the last checkpoint with more epochs continues the history
    cfg.epochs = 4
    train(cfg, resume=True)
    resumed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3, 4]
    assert resumed["epochs"][:3] == metrics["epochs"][:3]

    # the checkpoint exports to ONNX and the scanner-side classifier reads it
    from catscanner.runtime.breeds import BreedClassifier
    from catscanner.training.export import export_breeds
    from catscanner.runtime.imaging import load_image, preprocess
    from catscanner.runtime.onnx_model import OnnxModel

    onnx_path = export_breeds(best, tmp_path / "breeds.onnx")
    clf = BreedClassifier(OnnxModel(onnx_path, threads=1))
    photo = next((oxford_dir / "images").glob("Persian_1*.jpg"))
    probs = clf(preprocess(load_image(photo), clf.preprocess)[None])
    assert probs.shape == (1, 12) and np.isclose(probs.sum(), 1.0)


def test_training_is_deterministic_with_a_seed(oxford_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = TrainConfig(data=str(oxford_dir), out=str(tmp_path / name), epochs=1, limit=12, batch_size=6,
                          threads=1, seed=3)
        train(cfg)
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text())["epochs"][0])
    assert runs[0]["train_loss"] == pytest.approx(runs[1]["train_loss"], abs=1e-5)
    assert runs[0]["val_loss"] == pytest.approx(runs[1]["val_loss"], abs=1e-5)


def test_one_graph_scanner_from_a_distilled_breed_model(oxford_dir, tmp_path):
    """`--distill` keeps the ImageNet layer, so detector and breeds can share one backbone pass
    (scanner.onnx). The lever was rejected for the shipped models (see benchmarks/FINDINGS.md),
    but the path must keep working: the Scanner reads both answers from the one graph."""
    from catscanner.training.export import export_scanner
    from catscanner.runtime.scanner import SCANNER_FILE, Scanner

    cfg = TrainConfig(data=str(oxford_dir), out=str(tmp_path / "run"), backbone="efficientnet_lite0", epochs=1,
                      limit=12, batch_size=6, threads=2, distill=1.0)
    best = train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert np.isfinite(metrics["epochs"][0]["train_loss"])

    models = tmp_path / "models"
    export_scanner(best, [2.3, -0.4, 0.6, -1.7], 10.0, 0.5, models / SCANNER_FILE)
    scanner = Scanner(models, threads=1)
    assert scanner.classifier.model is scanner.detector.model  # one session answers both
    photo = next((oxford_dir / "images").glob("Persian_1*.jpg"))
    r = scanner.scan(photo, threshold=0.0)
    assert r.ok and r.is_cat and len(r.imagenet_top) == 5  # one epoch on 12 photos keeps ImageNet's view
    assert len(r.breeds) == 12 and abs(sum(b.percent for b in r.breeds) - 100) < 1
