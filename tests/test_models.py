"""Real ImageNet weights, torch <-> ONNX parity, and a scanner that runs without PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="model tests need the [train] extra (PyTorch)")

from catscanner.backbones import BACKBONES, create_backbone, load_backbone  # noqa: E402
from catscanner.data import read_split  # noqa: E402
from catscanner.evaluate import OXFORD_DOG_TO_IMAGENET  # noqa: E402
from catscanner.imaging import load_image, preprocess  # noqa: E402
from catscanner.onnx_model import OnnxModel  # noqa: E402
from catscanner.scanner import BREEDS_FILE, DETECTOR_FILE, default_model_dir  # noqa: E402

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


def test_detector_onnx_matches_torch(oxford_dir):
    from catscanner.backbones import CatDetectorNet

    onnx_model = OnnxModel(default_model_dir() / DETECTOR_FILE)
    meta = onnx_model.meta
    net = CatDetectorNet(load_backbone(meta["backbone"]), meta["coef"], meta["intercept"]).eval()
    x = np.stack([preprocess(load_image(p), onnx_model.preprocess) for p in _sample_photos(oxford_dir)])
    prob, logits, cat_map = onnx_model.run(x)
    with torch.no_grad():
        t_prob, t_logits, t_map = (t.numpy() for t in net(torch.from_numpy(x)))
    assert np.abs(prob - t_prob).max() < 1e-4
    p_onnx = np.exp(logits - logits.max(1, keepdims=True))
    p_torch = np.exp(t_logits - t_logits.max(1, keepdims=True))
    assert np.abs(p_onnx / p_onnx.sum(1, keepdims=True) - p_torch / p_torch.sum(1, keepdims=True)).max() < 1e-4
    assert np.abs(cat_map - t_map).max() < 1e-3


def test_breed_onnx_matches_torch(oxford_dir):
    from catscanner.backbones import BreedNet
    from catscanner.breeds import softmax

    path = default_model_dir() / BREEDS_FILE
    onnx_model = OnnxModel(path)
    cfg = onnx_model.meta["config"]
    # rebuild the torch network from the ONNX initializers (the weights that were exported)
    import onnx
    from onnx import numpy_helper

    net = BreedNet(create_backbone(cfg["backbone"]), 12, cfg["head"]).eval()
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    wanted = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    missing = [k for k in wanted if k not in inits]
    assert not missing, f"exported graph lacks weights {missing[:5]}"
    net.load_state_dict({k: torch.from_numpy(inits[k].copy()) for k in wanted}, strict=False)
    x = np.stack([preprocess(load_image(p), onnx_model.preprocess) for p in _sample_photos(oxford_dir)])
    (logits,) = onnx_model.run(x)
    with torch.no_grad():
        t_logits = net(torch.from_numpy(x)).numpy()
    T = onnx_model.meta["temperature"]
    assert np.abs(softmax(logits, T) - softmax(t_logits, T)).max() < 1e-4


def test_scanner_runs_without_torch(cat_photo):
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked for this test')
sys.meta_path.insert(0, Block())
from catscanner.scanner import Scanner
r = Scanner(threads=1).scan({str(cat_photo)!r})
assert 'torch' not in sys.modules
print(r.is_cat, len(r.breeds))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "True"
