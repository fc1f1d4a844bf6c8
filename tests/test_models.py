"""Real ImageNet weights, torch <-> ONNX parity, and a scanner that runs without PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="model tests need the [train] extra (PyTorch)")

from catscanner.training.backbones import BACKBONES, create_backbone, load_backbone  # noqa: E402
from catscanner.training.data import read_split  # noqa: E402
from catscanner.training.evaluate import OXFORD_DOG_TO_IMAGENET  # noqa: E402
from catscanner.runtime.imaging import load_image, preprocess  # noqa: E402
from catscanner.runtime.onnx_model import OnnxModel  # noqa: E402
from catscanner.runtime.scanner import default_model_dir  # noqa: E402

HERE = Path(__file__).parent


@pytest.mark.parametrize("name,params", [
    ("efficientnet_lite0", 4_652_008), ("efficientnet_lite1", 5_416_680), ("efficientnet_lite2", 6_092_072),
])
def test_efficientnet_lite_weights_load_strictly(name, params):
    model = load_backbone(name)  # load_state_dict(strict=True) inside
    assert sum(p.numel() for p in model.parameters()) == params


def test_resnet50_matches_torchvision_state_dict():
    """Keys and shapes equal torchvision's resnet50 (manifest written by real torchvision 0.29.1,
    see tests/data/README.md), so its published ImageNet weights load with strict=True."""
    manifest = json.loads((HERE / "data" / "torchvision_resnet50_state_dict.json").read_text())
    ours = {k: list(v.shape) for k, v in create_backbone("resnet50").state_dict().items()}
    assert ours == manifest
    # and a state dict with those keys and shapes loads strictly, then classifies a photo
    fake = {k: torch.randn(s) if s else torch.tensor(0) for k, s in manifest.items()}
    model = create_backbone("resnet50")
    model.load_state_dict(fake, strict=True)
    assert BACKBONES["resnet50"].preprocess.mean == (123.675, 116.28, 103.53)


def test_lite0_weights_are_real_imagenet_weights(oxford_dir):
    """Top-1 ImageNet breed on 44 Oxford dog photos (2 per breed with an ImageNet class)."""
    model = load_backbone("efficientnet_lite0")
    spec = BACKBONES["efficientnet_lite0"].preprocess
    per_breed: dict[str, list] = {}
    for it in read_split(oxford_dir, "test", species="dog"):
        if it.breed.lower() in OXFORD_DOG_TO_IMAGENET and len(per_breed.setdefault(it.breed, [])) < 2:
            per_breed[it.breed].append(it)
    items = [it for v in per_breed.values() for it in v]
    assert len(items) == 44
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack([preprocess(load_image(it.path), spec) for it in items])))
    truth = torch.tensor([OXFORD_DOG_TO_IMAGENET[it.breed.lower()] for it in items])
    assert (logits.argmax(1) == truth).float().mean() >= 0.7


def _sample_photos(oxford_dir, n_cats=6, n_dogs=2):
    cats = read_split(oxford_dir, "test")[::170][:n_cats]
    dogs = read_split(oxford_dir, "test", species="dog")[::50][:n_dogs]
    return [it.path for it in cats + dogs]


def _torch_twin(onnx_path: Path):
    """The PyTorch network an exported model came from, rebuilt from its metadata with the
    weights stored in the ONNX file (every parameter and buffer must be there)."""
    import onnx
    from onnx import numpy_helper

    from catscanner.training.backbones import BreedNet, CatDetectorNet

    meta = OnnxModel(onnx_path).meta
    kind = meta["kind"]
    if kind == "detector":
        net = CatDetectorNet(create_backbone(meta["backbone"]), meta["coef"], meta["intercept"])
    else:
        cfg = meta["config"]
        breed_net = BreedNet(create_backbone(cfg["backbone"]), 12, cfg["head"], keep_imagenet=kind == "scanner")
        net = breed_net if kind == "breeds" else CatDetectorNet(
            breed_net.backbone, meta["coef"], meta["intercept"], imagenet_fc=breed_net.imagenet_fc,
            breed_head=breed_net.head)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    state = net.state_dict()
    found = {k: torch.from_numpy(inits[k].copy()) for k in state if k in inits}
    # a layer registered under two names (the ImageNet layer) is stored once
    missing = [k for k in state if k not in inits and not k.endswith("num_batches_tracked")
               and not any(state[k].data_ptr() == state[o].data_ptr() for o in found)]
    assert not missing, f"{onnx_path.name} lacks weights {missing[:5]}"
    net.load_state_dict(found, strict=False)
    return net.eval(), meta


SHIPPED = [f for f in ("detector.onnx", "breeds.onnx", "scanner.onnx") if (default_model_dir() / f).exists()]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_onnx_models_match_torch(name, oxford_dir):
    from catscanner.runtime.breeds import softmax

    path = default_model_dir() / name
    onnx_model = OnnxModel(path)
    net, meta = _torch_twin(path)
    x = np.stack([preprocess(load_image(p), onnx_model.preprocess) for p in _sample_photos(oxford_dir)])
    got = onnx_model.run_named(x)
    with torch.no_grad():
        outs = net(torch.from_numpy(x))
    outs = outs if isinstance(outs, tuple) else (outs,)
    want = {name: t.numpy() for name, t in zip(onnx_model.output_names, outs)}
    if "cat_probability" in got:
        assert np.abs(got["cat_probability"] - want["cat_probability"]).max() < 1e-4
        assert np.abs(softmax(got["imagenet_logits"]) - softmax(want["imagenet_logits"])).max() < 1e-4
        assert np.abs(got["cat_map"] - want["cat_map"]).max() < 1e-3
    if "breed_logits" in got:
        T = meta["temperature"]
        assert np.abs(softmax(got["breed_logits"], T) - softmax(want["breed_logits"], T)).max() < 1e-4


@pytest.mark.skipif("detector.onnx" not in SHIPPED, reason="no separate detector shipped")
def test_detector_backbone_is_the_unchanged_imagenet_model():
    net, meta = _torch_twin(default_model_dir() / "detector.onnx")
    original = load_backbone(meta["backbone"]).state_dict()
    for k, v in net.backbone.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_scanner_runs_without_torch(cat_photo):
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked for this test')
sys.meta_path.insert(0, Block())
from catscanner.runtime.scanner import Scanner
r = Scanner(threads=1).scan({str(cat_photo)!r})
assert 'torch' not in sys.modules
print(r.is_cat, len(r.breeds))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "True"
