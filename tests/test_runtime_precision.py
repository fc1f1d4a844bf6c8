"""The runtime layer (``catscanner.runtime.engine``) and the precision checks of issue 9, on real photos.

* The breed model on OpenVINO (f32, and bf16 where this CPU has it natively, which is then what
  "auto" picks) against ONNX Runtime f32 on 120 Oxford test cats, 10 per breed: top-1 agreement and
  accuracy / macro-F1 within 0.3 points. (On 120 photos 0.3 points means no photo may change; the
  full test split is measured by ``python benchmarks/runtimes.py accuracy``.)
* The fallback: with OpenVINO unimportable (a fresh interpreter where ``import openvino`` fails),
  or with ``runtime="onnxruntime"`` / ``CATSCAN_RUNTIME=onnxruntime``, scanning works on ONNX Runtime.
* The interface: typed errors for a runtime that is not installed or a precision that cannot be
  had, the environment overrides, OpenVINO called from several threads at once.

* The detector (issue 9 item 2): scans on OpenVINO against scans on ONNX Runtime f32 of 96 photos
  (48 Oxford test cats, 24 test dogs, 24 COCO photos without a cat): verdicts identical on
  >= 99.5 % (so on 96 photos: all) and every cat's box IoU >= 0.9 (:func:`detector_agreement`; the full-size check is ``benchmarks/runtimes.py``). In bf16 the boxes
  miss that bar, so "auto" runs the detector in f32 on every CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from catscanner.errors import ModelError
from catscanner.runtime import engine
from catscanner.runtime.breeds import BREEDS, softmax
from catscanner.runtime.contract import ModelFiles, Output
from catscanner.runtime.engine import load_model
from catscanner.runtime.decoding import load_image
from catscanner.runtime.preprocessing import preprocess
from catscanner.training.data import read_coco, read_split

import openvino  # noqa: F401  the test extra installs it, so that CI exercises both runtimes: fail, never skip

MODELS = ModelFiles.resolve()
ACCURACY_POINTS = 0.3  # issue 9 item 2: accuracy and macro-F1 within 0.3 points of f32
VERDICT_AGREEMENT = 0.995  # detector verdicts identical on >= 99.5 % of the photos
BOX_IOU = 0.9  # box IoU with f32 at least this
PER_BREED = 10


# --------------------------------------------------------------------------- helpers


def spread_over_breeds(items: list, per_breed: int) -> list:
    """The first ``per_breed`` photos of each breed, in the split's order."""
    out, seen = [], {}
    for it in items:
        if seen.get(it.breed, 0) < per_breed:
            seen[it.breed] = seen.get(it.breed, 0) + 1
            out.append(it)
    return out


def breed_outputs(model, items: list) -> np.ndarray:
    """Breed logits (N, 12) of ``model`` on the photos, 8 at a time."""
    out = []
    for i in range(0, len(items), 8):
        batch = np.stack([preprocess(load_image(it.path), model.preprocess) for it in items[i:i + 8]])
        out.append(model.run(batch)[Output.BREED_LOGITS])
    return np.concatenate(out)


def breed_scores(labels: np.ndarray, logits: np.ndarray) -> dict:
    pred = logits.argmax(1)
    f1 = []
    for k in range(len(BREEDS)):
        tp = np.sum((pred == k) & (labels == k))
        wrong = np.sum((pred == k) != (labels == k))
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + wrong))
    return {"accuracy": float(np.mean(pred == labels)), "macro_f1": float(np.mean(f1))}


def make_scanner(runtime: str, precision: str = "auto"):
    """A Scanner on ``runtime``/``precision`` (1 thread)."""
    from catscanner.runtime.scanner import Scanner

    return Scanner(threads=1, runtime=runtime, precision=precision)


def box_iou(a, b) -> float:
    iw = max(0, min(a.right, b.right) - max(a.left, b.left))
    ih = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = iw * ih
    union = (a.right - a.left) * (a.bottom - a.top) + (b.right - b.left) * (b.bottom - b.top) - inter
    return inter / union if union > 0 else 1.0


def detector_agreement(pairs: list[tuple]) -> dict:
    """Verdict agreement and box IoU of the candidate scans with the reference scans (photos where
    both found a cat; each reference cat matched to the candidate's best-overlapping cat)."""
    same = [ref.is_cat == cand.is_cat for ref, cand in pairs]
    ious = []
    for ref, cand in pairs:
        for cat in ref.cats if ref.is_cat and cand.is_cat else []:
            ious.append(max((box_iou(cat.box, c.box) for c in cand.cats), default=0.0))
    return {"n": len(pairs), "verdict_agreement": float(np.mean(same)), "n_boxes": len(ious),
            "box_iou_min": min(ious, default=1.0), "box_iou_median": float(np.median(ious)) if ious else 1.0,
            "changed": [str(ref.path) for (ref, cand), s in zip(pairs, same) if not s]}


# --------------------------------------------------------------------------- breed precision


@pytest.fixture(scope="module")
def breed_photos(oxford_dir):
    items = spread_over_breeds(read_split(oxford_dir, "test"), PER_BREED)
    assert len(items) == PER_BREED * len(BREEDS)
    return items


@pytest.fixture(scope="module")
def f32_reference(breed_photos):
    model = load_model(MODELS.breeds, threads=1, runtime="onnxruntime", precision="f32")
    return breed_outputs(model, breed_photos)


def _precisions() -> list[str]:
    """f32, and whatever else "auto" or this CPU gives on OpenVINO (bf16 where native)."""
    return sorted({"f32", engine.choose_precision("openvino", "auto")} | ({"bf16"} if engine.native_bf16() else set()))


@pytest.mark.parametrize("precision", _precisions())
def test_breeds_on_openvino_match_f32(precision, breed_photos, f32_reference):
    model = load_model(MODELS.breeds, threads=1, runtime="openvino", precision=precision)
    assert model.runtime == "openvino"
    assert model.precision == (engine.choose_precision("openvino", precision))
    logits = breed_outputs(model, breed_photos)
    labels = np.array([it.label for it in breed_photos])
    ref, got = breed_scores(labels, f32_reference), breed_scores(labels, logits)
    agreement = float(np.mean(logits.argmax(1) == f32_reference.argmax(1)))
    detail = {"precision": model.precision, "f32": ref, "candidate": got, "agreement": agreement,
              "max_abs_logit_diff": float(np.abs(logits - f32_reference).max())}
    assert agreement >= 1 - ACCURACY_POINTS / 100, detail
    assert abs(got["accuracy"] - ref["accuracy"]) * 100 <= ACCURACY_POINTS, detail
    assert abs(got["macro_f1"] - ref["macro_f1"]) * 100 <= ACCURACY_POINTS, detail
    temperature = model.meta.temperature
    share_diff = np.abs(softmax(logits, temperature) - softmax(f32_reference, temperature)).max()
    if model.precision == "f32":  # the same arithmetic up to summation order
        assert np.abs(logits - f32_reference).max() < 1e-3, detail
    else:  # bf16: the breed shares users see move by at most a few points
        assert share_diff < 0.05, detail


# --------------------------------------------------------------------------- the interface


def test_auto_picks_the_faster_runtime_for_this_cpu_and_records_it(monkeypatch):
    monkeypatch.delenv(engine.ENV_RUNTIME, raising=False)
    monkeypatch.delenv(engine.ENV_PRECISION, raising=False)
    model = load_model(MODELS.breeds, threads=1)
    if engine.native_bf16():
        assert (model.runtime, model.precision) == ("openvino", "bf16")
    else:  # OpenVINO f32 measured no faster than ONNX Runtime (and slower to start)
        assert (model.runtime, model.precision) == ("onnxruntime", "f32")
    info = model.describe()
    assert info["runtime"] == model.runtime and info["version"] and info["threads"] == 1
    assert info["precision"] == model.precision and info["model"] == "breeds.onnx"
    ov = load_model(MODELS.breeds, threads=1, runtime="openvino")
    assert ov.describe()["runtime"] == "openvino" and ov.precision == ("bf16" if engine.native_bf16() else "f32")


def test_auto_takes_openvino_when_it_is_the_only_runtime(monkeypatch):
    monkeypatch.delenv(engine.ENV_RUNTIME, raising=False)
    real = engine.installed
    monkeypatch.setattr(engine, "installed", lambda r: r == "openvino" and real(r))
    assert engine.choose_runtime() == "openvino"
    monkeypatch.setattr(engine, "installed", lambda r: False)
    with pytest.raises(ModelError, match="No model runtime is installed"):
        engine.choose_runtime()


def test_environment_overrides_auto_and_arguments_override_environment(monkeypatch):
    monkeypatch.setenv(engine.ENV_RUNTIME, "openvino")
    assert load_model(MODELS.breeds, threads=1).runtime == "openvino"
    assert load_model(MODELS.breeds, threads=1, runtime="onnxruntime").runtime == "onnxruntime"
    monkeypatch.setenv(engine.ENV_RUNTIME, "onnxruntime")
    assert load_model(MODELS.breeds, threads=1).runtime == "onnxruntime"
    monkeypatch.setenv(engine.ENV_RUNTIME, "nonsense")
    with pytest.raises(ModelError, match="Unknown runtime 'nonsense'.*CATSCAN_RUNTIME"):
        load_model(MODELS.breeds, threads=1)


def test_precisions_that_cannot_be_had_are_typed_errors(monkeypatch):
    monkeypatch.delenv(engine.ENV_PRECISION, raising=False)
    with pytest.raises(ModelError, match="f32 only"):
        load_model(MODELS.breeds, threads=1, runtime="onnxruntime", precision="bf16")
    with pytest.raises(ModelError, match="Unknown precision"):
        load_model(MODELS.breeds, threads=1, precision="fp8")
    if not engine.native_bf16():
        with pytest.raises(ModelError, match="no native bf16"):
            load_model(MODELS.breeds, threads=1, runtime="openvino", precision="bf16")


def test_a_model_openvino_cannot_read_falls_back_under_auto_only(monkeypatch):
    """Today's detector.onnx (opset 17 ReduceLogSumExp) is such a model; once the detector is
    exported so that OpenVINO reads it, this checks that it loads on OpenVINO."""
    monkeypatch.delenv(engine.ENV_RUNTIME, raising=False)
    monkeypatch.delenv(engine.ENV_PRECISION, raising=False)
    monkeypatch.setattr(engine, "AUTO_OPENVINO_NEEDS_BF16", False)  # "auto" = OpenVINO on any CPU
    try:
        engine.OpenVinoModel(MODELS.detector, threads=1)
        readable = True
    except ModelError as e:
        assert "OpenVINO could not read" in str(e) or "could not compile" in str(e)
        readable = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(MODELS.detector, threads=1)
    if readable:
        assert model.runtime == "openvino" and model.fallback_reason is None
    else:
        assert model.runtime == "onnxruntime" and "OpenVINO could not" in model.fallback_reason
        assert any("ONNX Runtime instead" in str(w.message) for w in caught)
        with pytest.raises(ModelError, match="OpenVINO could not"):
            load_model(MODELS.detector, threads=1, runtime="openvino")
    _, _, h, w = model.input_shape
    outputs = model.run(np.zeros((2, 3, h or 224, w or 224), np.float32))
    assert set(outputs) == set(model.output_names) and all(v.shape[0] == 2 for v in outputs.values())


def test_openvino_runs_from_several_threads_at_once(breed_photos, f32_reference):
    """The web server's workers share one Scanner: each thread gets its own infer request (on one
    stream they take turns; with streams=2 they run side by side)."""
    model = load_model(MODELS.breeds, threads=1, runtime="openvino", precision="f32", streams=2)
    assert model.streams == 2 and model.describe()["streams"] == 2
    assert load_model(MODELS.breeds, threads=1, runtime="openvino", precision="f32").streams == 1
    items = breed_photos[:24]
    batches = [np.stack([preprocess(load_image(it.path), model.preprocess)]) for it in items]
    got: dict[int, np.ndarray] = {}

    def work(indices):
        for i in indices:
            got[i] = model.run(batches[i])[Output.BREED_LOGITS][0]

    threads = [threading.Thread(target=work, args=(range(k, len(items), 3),)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.abs(np.stack([got[i] for i in range(len(items))]) - f32_reference[:24]).max() < 1e-3


def test_openvino_static_shapes_give_the_same_answers(breed_photos, f32_reference):
    model = engine.OpenVinoModel(MODELS.breeds, threads=1, precision="f32", static_shapes=True, max_shapes=2)
    logits = breed_outputs(model, breed_photos[:20])  # batches of 8, 8 and 4: three shapes, two kept
    assert np.abs(logits - f32_reference[:20]).max() < 1e-3
    assert len(model.compiled_shapes) == 2


# --------------------------------------------------------------------------- the fallback


SCAN_IN_FRESH_INTERPRETER = """
import json, sys
{block}
from catscanner.errors import ModelError
from catscanner.runtime.engine import load_model
from catscanner.runtime.scanner import Scanner
scanner = Scanner(threads=1)
r = scanner.scan(sys.argv[1])
out = {{"is_cat": r.is_cat, "breeds": [b.breed for b in r.breeds], "box": r.box is not None,
        "runtimes": [scanner.detector.model.runtime, scanner.classifier.model.runtime]}}
try:
    load_model(scanner.models.breeds, runtime="openvino")
    out["named_openvino"] = "loaded"
except ModelError as e:
    out["named_openvino"] = str(e)
print(json.dumps(out))
"""


def _scan_in_subprocess(photo: Path, block: str = "", env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCAN_IN_FRESH_INTERPRETER.format(block=block), str(photo)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_scanning_works_without_openvino(cat_photo):
    """A machine without OpenVINO: ``import openvino`` fails, everything runs on ONNX Runtime, and
    asking for OpenVINO by name says how to install it."""
    out = _scan_in_subprocess(cat_photo, block="sys.modules['openvino'] = None  # import openvino -> ImportError",
                              env={"CATSCAN_RUNTIME": "", "CATSCAN_PRECISION": ""})
    assert out["is_cat"] and out["box"] and out["breeds"][0] == "Bengal", out
    assert out["runtimes"] == ["onnxruntime", "onnxruntime"], out
    assert "openvino runtime is not installed" in out["named_openvino"], out
    assert 'pip install "catscanner[openvino]"' in out["named_openvino"], out


def test_scanning_on_onnxruntime_when_the_environment_asks(cat_photo):
    out = _scan_in_subprocess(cat_photo, env={"CATSCAN_RUNTIME": "onnxruntime"})
    assert out["is_cat"] and out["box"] and out["breeds"][0] == "Bengal", out
    assert out["runtimes"] == ["onnxruntime", "onnxruntime"], out


def test_scanner_runtime_argument_forces_onnxruntime(cat_photo):
    scanner = make_scanner("onnxruntime")
    assert scanner.detector.model.runtime == "onnxruntime" and scanner.classifier.model.runtime == "onnxruntime"
    r = scanner.scan(cat_photo)
    assert r.is_cat and r.breeds[0].breed == "Bengal"


# --------------------------------------------------------------------------- detector precision


@pytest.fixture(scope="module")
def detector_photos(oxford_dir, data_dir) -> list[Path]:
    cats = spread_over_breeds(read_split(oxford_dir, "test"), 4)
    dogs = spread_over_breeds(read_split(oxford_dir, "test", species="dog"), 1)[:24]
    no_cat = [c.path for c in read_coco(data_dir / "coco128") if not c.cat_boxes][:24]
    assert len(cats) == 48 and len(dogs) == 24 and len(no_cat) == 24
    return [it.path for it in cats + dogs] + no_cat


@pytest.fixture(scope="module")
def f32_scans(detector_photos) -> list:
    return list(make_scanner("onnxruntime", "f32").scan_many(detector_photos))


@pytest.mark.parametrize("precision", ["f32", "auto"])
def test_detector_on_openvino_matches_f32(precision, detector_photos, f32_scans, monkeypatch):
    """What the scanner runs the detector in on OpenVINO ("auto": f32 even where bf16 is native, see
    the next test) keeps issue 9's bar: the same verdicts, every box at IoU >= 0.9 with f32."""
    monkeypatch.delenv(engine.ENV_PRECISION, raising=False)
    scanner = make_scanner("openvino", precision)
    assert scanner.detector.model.precision == "f32"
    assert scanner.classifier.model.precision == engine.choose_precision("openvino", precision)
    check = detector_agreement(list(zip(f32_scans, scanner.scan_many(detector_photos))))
    assert check["verdict_agreement"] >= VERDICT_AGREEMENT, check
    assert check["n_boxes"] >= 40 and check["box_iou_min"] >= BOX_IOU, check


@pytest.mark.skipif(not engine.native_bf16(), reason="this CPU has no native bf16")
def test_detector_in_bf16_only_when_asked_for(detector_photos, f32_scans):
    """Why "auto" keeps the detector in f32: in bf16 its verdicts hold but its boxes move past issue
    9's bar (measured on these 96 photos: box IoU with f32 down to 0.73 for v0.9, 0.83 for v0.8, on a
    CPU with AMX). Asked for by name, bf16 is still what it runs in."""
    scanner = make_scanner("openvino", "bf16")
    assert scanner.detector.model.precision == "bf16"
    check = detector_agreement(list(zip(f32_scans, scanner.scan_many(detector_photos))))
    assert check["verdict_agreement"] >= VERDICT_AGREEMENT and check["box_iou_median"] >= BOX_IOU, check
