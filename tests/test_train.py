"""A short real training run on real photos: loss goes down, checkpoints resume, export works."""

from __future__ import annotations

import json

import numpy as np
import pytest

try:
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - the README's test command installs it
    pytest.fail("test_train.py needs PyTorch: pip install torch==2.13.0 -e '.[train,test]'", pytrace=False)

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

