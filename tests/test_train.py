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
    from catscanner.runtime.decoding import load_image
    from catscanner.runtime.preprocessing import preprocess
    from catscanner.runtime.engine import OrtModel

    onnx_path = export_breeds(best, tmp_path / "breeds.onnx")
    clf = BreedClassifier(OrtModel(onnx_path, threads=1))
    photo = next((oxford_dir / "images").glob("Persian_1*.jpg"))
    probs = clf(preprocess(load_image(photo), clf.preprocess)[None])
    assert probs.shape == (1, 12) and np.isclose(probs.sum(), 1.0)

    # --read-size: the same centre crop read at a larger size, recorded in the model's metadata
    larger = BreedClassifier(OrtModel(export_breeds(best, tmp_path / "breeds_288.onnx", read_size=288), threads=1))
    assert larger.preprocess.size == 288 and larger.preprocess.crop_fraction == clf.preprocess.crop_fraction
    x = preprocess(load_image(photo), larger.preprocess)[None]
    assert x.shape == (1, 3, 288, 288)
    assert np.isclose(larger(x).sum(), 1.0)


def test_training_is_deterministic_with_a_seed(oxford_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = TrainConfig(data=str(oxford_dir), out=str(tmp_path / name), epochs=1, limit=12, batch_size=6,
                          threads=1, seed=3)
        train(cfg)
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text())["epochs"][0])
    assert runs[0]["train_loss"] == pytest.approx(runs[1]["train_loss"], abs=1e-5)
    assert runs[0]["val_loss"] == pytest.approx(runs[1]["val_loss"], abs=1e-5)



def test_folds_split_every_cat_once_and_evenly(oxford_dir):
    from collections import Counter

    from catscanner.training.data import training_items

    held_out = []
    for fold in range(5):
        train_items, val_items = training_items(TrainConfig(data=str(oxford_dir), photos="all", folds=5, fold=fold))
        assert not {it.name for it in train_items} & {it.name for it in val_items}
        assert len(train_items) + len(val_items) == 2100
        per_breed = Counter(it.label for it in val_items)
        assert len(per_breed) == 12 and max(per_breed.values()) - min(per_breed.values()) <= 1, per_breed
        held_out += [it.name for it in val_items]
    assert len(held_out) == len(set(held_out)) == 2100  # every cat is held out exactly once


def test_cross_validation_trains_each_fold_once_and_reports(oxford_dir, tmp_path):
    from catscanner.training.crossval import cross_validate

    cfg = TrainConfig(data=str(oxford_dir), out=str(tmp_path / "cv"), photos="all", epochs=1, limit=12,
                      batch_size=6, threads=1, seed=2)
    r = cross_validate(cfg, folds=2)
    assert [f["fold"] for f in r["folds"]] == [0, 1]
    assert all(f["photos"] >= 12 and 0 <= f["accuracy"] <= 1 for f in r["folds"])
    assert r["out_of_fold"]["n"] == sum(f["photos"] for f in r["folds"])
    assert 0.3 <= r["temperature"] <= 5.0 and r["accuracy_std"] >= 0
    assert (tmp_path / "cv" / "cv_confusion.png").stat().st_size > 10_000
    names = [set(np.load(tmp_path / "cv" / f"fold{i}" / "val_predictions.npz")["names"]) for i in (0, 1)]
    assert not names[0] & names[1]
    # a second call reuses the finished folds instead of training them again
    stamp = (tmp_path / "cv" / "fold0" / "best.pt").stat().st_mtime_ns
    assert cross_validate(cfg, folds=2)["folds"] == r["folds"]
    assert (tmp_path / "cv" / "fold0" / "best.pt").stat().st_mtime_ns == stamp
    assert r["folds_done"] == 2 and r["k"] == 2
    from dataclasses import replace

    from catscanner.errors import CatScannerError
    from catscanner.training.crossval import report

    # folds of another recipe or another k are not taken for this one's (they were, silently)
    with pytest.raises(CatScannerError, match="--backbone 'efficientnet_lite0' -> 'efficientnet_lite1'"):
        cross_validate(replace(cfg, backbone="efficientnet_lite1", epochs=5), folds=2)
    with pytest.raises(CatScannerError, match="--folds 2 -> 3"):
        report(cfg, 3)
    # a report of unfinished folds says so, and needs at least two

    (tmp_path / "cv" / "fold1" / "val_predictions.npz").unlink()
    with pytest.raises(CatScannerError, match="1 of 2 folds finished"):
        report(cfg, 2)


def test_training_without_a_validation_set_keeps_the_last_epoch_and_the_given_temperature(oxford_dir, tmp_path):
    cfg = TrainConfig(data=str(oxford_dir), out=str(tmp_path / "all"), photos="all", val_fraction=0.0,
                      temperature=0.7, epochs=2, limit=12, batch_size=6, threads=1)
    best = train(cfg)
    summary = json.loads((tmp_path / "all" / "metrics.json").read_text())["summary"]
    assert summary["kept_epoch"] == 2 and summary["val_accuracy"] is None and summary["temperature"] == 0.7
    assert torch.load(best, weights_only=False)["temperature"] == 0.7
    assert not (tmp_path / "all" / "val_predictions.npz").exists()


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_keep_last_measures_validation_once_and_writes_strict_json(oxford_dir, tmp_path, monkeypatch):
    import catscanner.training.train as train_module

    calls = []
    real = train_module.predict_logits

    def counting(model, photos, spec, batch_size=32):
        calls.append(len(photos))
        return real(model, photos, spec, batch_size)

    monkeypatch.setattr(train_module, "predict_logits", counting)
    cfg = TrainConfig(data=str(oxford_dir), out=str(tmp_path / "last"), keep="last", epochs=2, limit=12,
                      batch_size=6, threads=1)
    train(cfg)
    assert len(calls) == 1  # the last epoch's validation pass is the kept model's predictions
    metrics = _strict_json((tmp_path / "last" / "metrics.json").read_text())  # no NaN for unmeasured epochs
    first, last = metrics["epochs"]
    assert first["val_accuracy"] is None and first["val_loss"] is None
    assert last["val_accuracy"] == metrics["summary"]["val_accuracy"]
    saved = np.load(tmp_path / "last" / "val_predictions.npz")
    assert np.mean(saved["logits"].argmax(1) == saved["labels"]) == pytest.approx(last["val_accuracy"])


def test_init_from_starts_each_fold_from_its_own_fold_model(oxford_dir, tmp_path):
    """--init-from fine-tunes a trained model ('{fold}' names each fold's own), e.g. a last epoch at
    a higher resolution; a checkpoint of another backbone or no file at all is a clear error."""
    from catscanner.errors import CatScannerError

    base = TrainConfig(data=str(oxford_dir), out=str(tmp_path / "cv" / "fold1"), photos="all", folds=2, fold=1,
                       epochs=1, limit=12, batch_size=6, threads=1, seed=4)
    trained = torch.load(train(base), weights_only=False)["model"]
    tuned_cfg = TrainConfig(data=str(oxford_dir), out=str(tmp_path / "tuned"), photos="all", folds=2, fold=1,
                            epochs=1, limit=12, batch_size=6, threads=1, image_size=256, lr_head=0.0,
                            lr_backbone=0.0, init_from=str(tmp_path / "cv" / "fold{fold}" / "best.pt"))
    tuned = torch.load(train(tuned_cfg), weights_only=False)
    # learning rate 0: every weight is still the fold model's (only BatchNorm statistics move)
    for name, value in trained.items():
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(tuned["model"][name], value), name
    assert tuned["preprocess"]["size"] == 256
    with pytest.raises(CatScannerError, match="no such checkpoint"):
        train(TrainConfig(data=str(oxford_dir), out=str(tmp_path / "x"), init_from=str(tmp_path / "missing.pt"),
                          epochs=1, limit=12, batch_size=6, threads=1))
    # a model that trained on this run's validation photos: fold 1's model validating on fold 0
    with pytest.raises(CatScannerError, match="trained on .* of this run's .* validation photos"):
        train(TrainConfig(data=str(oxford_dir), out=str(tmp_path / "leak"), photos="all", folds=2, fold=0,
                          init_from=str(tmp_path / "cv" / "fold1" / "best.pt"), epochs=1, limit=12, batch_size=6,
                          threads=1))
    with pytest.raises(CatScannerError, match="needs --folds"):
        train(TrainConfig(data=str(oxford_dir), out=str(tmp_path / "nofold"), init_from=str(tmp_path / "cv" / "fold{fold}" / "best.pt"),
                          epochs=1, limit=12, batch_size=6, threads=1))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CatScannerError, match="cannot be read as a breed checkpoint"):
        train(TrainConfig(data=str(oxford_dir), out=str(tmp_path / "broken"), init_from=str(broken),
                          epochs=1, limit=12, batch_size=6, threads=1))
    with pytest.raises(CatScannerError, match="do not fit this run's model"):
        train(TrainConfig(data=str(oxford_dir), out=str(tmp_path / "z"), init_from=str(tmp_path / "cv" / "fold1" / "best.pt"),
                          head="linear", epochs=1, limit=12, batch_size=6, threads=1))
    with pytest.raises(CatScannerError, match="efficientnet_lite0 model; this run trains efficientnet_lite1"):
        train(TrainConfig(data=str(oxford_dir), out=str(tmp_path / "y"), init_from=str(tmp_path / "cv" / "fold1" / "best.pt"),
                          backbone="efficientnet_lite1", epochs=1, limit=12, batch_size=6, threads=1))


def _cli(*args: str):
    from typer.testing import CliRunner

    from catscanner.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--val-fraction", "1"], "--val-fraction must be at least 0 and below 1"),
    (["--val-fraction", "-0.2"], "--val-fraction must be at least 0 and below 1"),
    (["--limit", "-40"], "--limit must be 0"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--temperature", "-1"], "--temperature must be positive"),
    (["--backbone", "foo"], "Unknown backbone 'foo'"),
    (["--fold", "2"], "--fold needs --folds"),
    (["--folds", "5", "--fold", "5"], "--fold must be from 0 to 4"),
    (["--folds", "5", "--val-fraction", "0.3"], "--val-fraction is not used with --folds"),
])
def test_training_options_that_cannot_train_are_usage_errors(oxford_dir, tmp_path, flags, message):
    """Each once ended in a traceback after the photos loaded (a division by zero, a missing
    best_weights.pt), or trained silently wrong (no validation set; a negative temperature that
    turns every breed mix upside down; --fold without --folds trained on the --val-fraction split, and
    --val-fraction with --folds was ignored): now exit 2 naming the flag, before any training."""
    code, text = _cli("train", "--data", str(oxford_dir), "--out", str(tmp_path / "run"), "--limit", "12", *flags)
    assert code == 2 and message in text, text
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_config_file_is_checked_like_the_flags(oxford_dir, tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"epochs": "two"}')
    assert _cli("train", "--config", str(config), "--data", str(oxford_dir))[1].endswith("--epochs must be int, not 'two'")
    code, text = _cli("train", "--config", str(tmp_path / "none.json"))
    assert code == 2 and "cannot be read" in text, text
    config.write_text("[1, 2]")
    code, text = _cli("train", "--config", str(config))
    assert code == 2 and "must hold a JSON object" in text, text
    config.write_text("{'epochs': 1}")
    code, text = _cli("train", "--config", str(config))
    assert code == 2 and "c.json: not a JSON file" in text, text
    config.write_text('\ufeff{"epochs": 0}', encoding="utf-8")  # saved by Notepad: a byte-order mark, then the JSON
    code, text = _cli("train", "--config", str(config), "--data", str(oxford_dir))
    assert code == 2 and "--epochs must be at least 1" in text, text


def test_resume_refuses_a_cut_short_or_foreign_checkpoint(oxford_dir, tmp_path):
    """A checkpoint cut short by Ctrl-C while saving ended ``--resume`` in a traceback; a checkpoint of
    other settings was resumed silently, scoring old weights on another validation set. Checkpoints are
    now saved whole (a temporary file, renamed) and ``--resume`` checks them."""
    from dataclasses import asdict

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")
    args = ["train", "--data", str(oxford_dir), "--out", str(run), "--limit", "12", "--epochs", "1", "--resume"]
    code, text = _cli(*args)
    assert code == 2 and "checkpoint.pt cannot be read" in text and "without --resume" in text, text
    stored = asdict(TrainConfig(data=str(oxford_dir), out=str(run), limit=12, epochs=1, seed=0))
    torch.save({"config": stored, "model": {}, "epoch": 0}, run / "checkpoint.pt")
    code, text = _cli(*args, "--seed", "7")
    assert code == 2 and "--seed 0 -> 7" in text and "same flags" in text, text


def test_export_breeds_refuses_what_is_not_a_finished_model_and_keeps_the_old_file(tmp_path, monkeypatch):
    """``export-breeds`` on a file that is not a ``best.pt`` ended in a traceback (KeyError 'breeds',
    UnpicklingError); an export stopped half-way left a broken model at ``--out`` (the shipped one, by
    default). Now: exit 2 with what to pass, and the old file stays until the new one is whole."""
    from dataclasses import asdict

    from catscanner.training import export
    from catscanner.training.config import TrainConfig as Config

    target = tmp_path / "breeds.onnx"
    target.write_bytes(b"the old model")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    code, text = _cli("export-breeds", str(tmp_path / "garbage.pt"), "--out", str(target))
    assert code == 2 and "cannot be read as a breed checkpoint" in text, text
    torch.save({"model": {}, "epoch": 0, "config": asdict(Config())}, tmp_path / "checkpoint.pt")
    code, text = _cli("export-breeds", str(tmp_path / "checkpoint.pt"), "--out", str(target))
    assert code == 2 and "not the best.pt" in text, text
    code, text = _cli("export-breeds", str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path))
    assert code == 2 and "is a folder" in text, text

    def stopped(model, args, path, **kwargs):  # Ctrl-C once part of the graph is written
        open(path, "wb").write(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(export.torch.onnx, "export", stopped)
    from catscanner.runtime.contract import ModelMeta
    from catscanner.runtime.preprocessing import Preprocess

    meta = ModelMeta("breeds", "efficientnet_lite0", Preprocess(224, 0.875, (127.0,) * 3, (128.0,) * 3))
    with pytest.raises(KeyboardInterrupt):
        export.export_onnx(torch.nn.Conv2d(3, 12, 1), meta, target, ("logits",))
    assert target.read_bytes() == b"the old model"


def test_a_breed_model_with_a_negative_temperature_is_refused(tmp_path):
    """A negative temperature (``train --temperature -1`` once went through) reverses the softmax: the
    shipped Persian came out 'Birman 14.5 %'. The model's metadata is checked when it loads."""
    import onnx

    from catscanner.errors import ModelError
    from catscanner.runtime.contract import META_KEY, ModelFiles  # ModelMeta.from_json checks it for every runtime
    from catscanner.runtime.engine import OrtModel

    proto = onnx.load(str(ModelFiles.resolve(None).breeds))
    entry = next(p for p in proto.metadata_props if p.key == META_KEY)
    meta = json.loads(entry.value)
    meta["temperature"] = -abs(meta["temperature"])
    entry.value = json.dumps(meta)
    onnx.save(proto, str(tmp_path / "breeds.onnx"))
    with pytest.raises(ModelError, match="temperature .* is not a positive number"):
        OrtModel(tmp_path / "breeds.onnx", threads=1)


def test_development_commands_refuse_an_unusable_out_before_the_work(oxford_dir, data_dir, tmp_path):
    """A bad ``--out`` was found only after the work (minutes to hours), in a traceback."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    code, text = _cli("evaluate", "--data", str(oxford_dir), "--out", str(a_file))
    assert code == 2 and "is a file" in text, text
    code, text = _cli("evaluate-detector", "--data", str(data_dir), "--out", str(a_file))
    assert code == 2 and "is a file" in text, text
    code, text = _cli("fit-detector", "--data", str(data_dir), "--out", str(tmp_path))
    assert code == 2 and "is a folder" in text, text
    code, text = _cli("fit-detector", "--data", str(data_dir), "--out", str(tmp_path / "d.onnx"), "--cache", str(a_file))
    assert code == 2 and "is a file" in text, text
    code, text = _cli("train", "--data", str(oxford_dir), "--out", str(a_file), "--limit", "12")
    assert code == 2 and "a_file" in text, text
    code, text = _cli("bench", "--quick", "--json-out", str(tmp_path))  # the whole benchmark ran first
    assert code == 2 and "is a folder" in text, text


def test_a_stopped_training_run_says_how_to_go_on(oxford_dir, tmp_path, monkeypatch):
    """Ctrl-C ended ``catscan train`` silently (exit 130, mid progress bar)."""
    import catscanner.training.train as training

    def stopped(cfg, resume=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", stopped)
    code, text = _cli("train", "--data", str(oxford_dir), "--out", str(tmp_path / "run"))
    assert code == 130 and "interrupted" in text and "--resume continues" in text, text


def test_cross_validate_photos_default_to_all_with_a_config_file_too(tmp_path, monkeypatch):
    """With ``--config``, cross-validation used ``trainval`` (1,056 cats) instead of the documented
    default of all 2,100, unless the file or a flag says otherwise."""
    import catscanner.training.crossval as crossval

    seen = []

    def report(cfg, k):
        seen.append(cfg.photos)
        raise crossval.CatScannerError("stop here")

    monkeypatch.setattr(crossval, "report", report)
    plain, chosen = tmp_path / "plain.json", tmp_path / "chosen.json"
    plain.write_text('{"epochs": 1}')
    chosen.write_text('{"photos": "trainval"}')
    for args in (["--config", str(plain)], ["--config", str(chosen)], [], ["--photos", "trainval"]):
        assert _cli("cross-validate", "--report-only", "--out", str(tmp_path / "cv"), *args)[0] == 2
    assert seen == ["all", "trainval", "all", "trainval"]


def test_cross_validate_refuses_a_validation_share_its_folds_would_ignore(tmp_path):
    """Each fold's validation set is the held-out fold: a --val-fraction in the config was ignored."""
    config = tmp_path / "c.json"
    config.write_text('{"val_fraction": 0.3}')
    code, text = _cli("cross-validate", "--report-only", "--config", str(config), "--out", str(tmp_path / "cv"))
    assert code == 2 and "--val-fraction is not used with --folds" in text, text
    assert "--val-fraction" not in _cli("cross-validate", "--help")[1]


def test_development_commands_write_to_the_package_by_default_and_say_when_stopped(data_dir, tmp_path, monkeypatch):
    """``export-breeds`` and ``fit-detector`` wrote to src/catscanner/models/ relative to the current
    folder (outside a checkout: an error, or a file nobody loads); Ctrl-C in ``fit-detector``,
    ``evaluate`` and ``evaluate-detector`` printed only "Aborted"."""
    import catscanner.training.evaluate as evaluation
    import catscanner.training.fit_detector as fitting
    from catscanner.runtime.contract import default_model_dir

    written = []

    def stopped(*args, **kwargs):
        written.append(args[1])
        raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "fit_detector", stopped)
    monkeypatch.setattr(evaluation, "evaluate_breeds", stopped)
    monkeypatch.setattr(evaluation, "evaluate_detector", stopped)
    monkeypatch.chdir(tmp_path)  # not a checkout
    code, text = _cli("fit-detector", "--data", str(data_dir))
    shipped = default_model_dir() / "detector.onnx"
    assert written == [shipped] and code == 130, text
    assert "interrupted" in text and "detector.onnx was not written" in text and "--cache" in text, text
    assert not (tmp_path / "src").exists()
    for command in ("evaluate", "evaluate-detector"):
        code, text = _cli(command, "--out", str(tmp_path / "r"))
        assert code == 130 and "interrupted: no report was written" in text, text
