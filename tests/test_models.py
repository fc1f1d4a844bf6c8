"""Real ImageNet weights and torch <-> ONNX parity of the shipped models.

These tests need the training extra (PyTorch); the README's test command installs it. Without it
they fail (they are never skipped): a missing PyTorch is a broken test setup, not a reason to test
less. (That scanning runs *without* PyTorch is tested in test_architecture.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

try:
    import torch
except ImportError:  # pragma: no cover - the README's test command installs it
    pytest.fail("test_models.py needs PyTorch: pip install torch==2.13.0 -e '.[train,test]'", pytrace=False)

from catscanner.runtime.breeds import softmax  # noqa: E402
from catscanner.runtime.contract import BREEDS_FILE, DETECTOR_FILE, DETECTOR_OUTPUTS, Output, default_model_dir  # noqa: E402
from catscanner.runtime.decoding import load_image  # noqa: E402
from catscanner.runtime.preprocessing import preprocess  # noqa: E402
from catscanner.runtime.engine import OrtModel  # noqa: E402
from catscanner.training.backbones import BACKBONES, create_backbone, load_backbone  # noqa: E402
from catscanner.training.data import read_split  # noqa: E402
from catscanner.training.evaluate import OXFORD_DOG_TO_IMAGENET  # noqa: E402

HERE = Path(__file__).parent


@pytest.mark.parametrize("name,params", [
    ("efficientnet_lite0", 4_652_008), ("efficientnet_lite1", 5_416_680), ("efficientnet_lite2", 6_092_072),
])
def test_efficientnet_lite_weights_load_strictly(name, params):
    model = load_backbone(name)  # load_state_dict(strict=True) inside
    assert sum(p.numel() for p in model.parameters()) == params


def test_resnet50_matches_torchvision_state_dict(tmp_path):
    """Keys and shapes equal torchvision's resnet50 (manifest written by real torchvision 0.29.1,
    see tests/data/README.md), so its published ImageNet weights load with strict=True; a weights
    file given with --weights ends up, tensor for tensor, in the network."""
    manifest = json.loads((HERE / "data" / "torchvision_resnet50_state_dict.json").read_text())
    ours = {k: list(v.shape) for k, v in create_backbone("resnet50").state_dict().items()}
    assert ours == manifest

    # A weights file with torchvision's keys and shapes (random values; BatchNorm variances > 0).
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.rand(s, generator=g) + 0.5 if k.endswith("running_var") else
                 torch.randn(s, generator=g) * 0.05) if s else torch.tensor(0) for k, s in manifest.items()}
    torch.save(state, tmp_path / "resnet50.pth")
    model = load_backbone("resnet50", weights=tmp_path / "resnet50.pth")  # the --weights path
    assert not model.training
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())  # every tensor came from the file

    # A file that is not torchvision's layout is refused, not half-loaded.
    torch.save({k: state[k] for k in ("conv1.weight", "fc.weight", "fc.bias")}, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        load_backbone("resnet50", weights=tmp_path / "partial.pth")
    # torchvision's preprocessing: resize to 256, centre crop 224, its ImageNet mean and std
    spec = BACKBONES["resnet50"].preprocess
    assert (spec.size, spec.crop_fraction, spec.resample) == (224, 224 / 256, "bilinear")
    assert spec.mean == (123.675, 116.28, 103.53) and spec.std == (58.395, 57.12, 57.375)


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

    from catscanner.training.backbones import BreedNet
    from catscanner.training.detection import WholeFrameDetectorNet, make_head

    meta = OrtModel(onnx_path).meta
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    if meta.kind == "detector":
        net = WholeFrameDetectorNet(create_backbone(meta.backbone), make_head(meta.details["head"]))
    else:
        net = BreedNet(create_backbone(meta.backbone), len(meta.breeds), meta.details["config"]["head"])
    state = net.state_dict()
    found = {k: torch.from_numpy(inits[k].copy()) for k in state if k in inits}
    # a layer registered under two names is stored once
    missing = [k for k in state if k not in inits and not k.endswith("num_batches_tracked")
               and not any(state[k].data_ptr() == state[o].data_ptr() for o in found)]
    assert not missing, f"{onnx_path.name} lacks weights {missing[:5]}"
    net.load_state_dict(found, strict=False)
    return net.eval(), meta


# Both models ship with the package; a missing one is a failure here, never a skip.
SHIPPED = (DETECTOR_FILE, BREEDS_FILE)


def _inputs(oxford_dir, spec) -> list[np.ndarray]:
    """The sample photos as the model's input: one batch for a centre-crop model; for the
    whole-frame detector one input per photo (their shapes differ) plus a 3:1 panorama."""
    imgs = [load_image(p) for p in _sample_photos(oxford_dir)]
    if not spec.whole_frame:
        return [np.stack([preprocess(img, spec) for img in imgs])]
    wide = imgs[0].resize((1500, 500))
    return [preprocess(img, spec)[None] for img in imgs + [wide]]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_onnx_models_match_torch(name, oxford_dir):
    path = default_model_dir() / name
    assert path.is_file(), f"{path} is not shipped"
    onnx_model = OrtModel(path)
    net, meta = _torch_twin(path)
    for x in _inputs(oxford_dir, onnx_model.preprocess):
        got = onnx_model.run(x)
        with torch.no_grad():
            outs = net(torch.from_numpy(x))
        outs = outs if isinstance(outs, tuple) else (outs,)
        want = {name: t.numpy() for name, t in zip(onnx_model.output_names, outs)}
        if meta.kind == "detector":
            assert set(got) == set(DETECTOR_OUTPUTS)
            for key in (Output.CAT_HEATMAP, Output.BOX_SIZE, Output.BOX_OFFSET):
                assert np.abs(got[key] - want[key]).max() < 1e-3, key
            assert np.abs(softmax(got[Output.IMAGENET_LOGITS]) - softmax(want[Output.IMAGENET_LOGITS])).max() < 1e-4
            assert np.abs(got[Output.IMAGENET_MAP] - want[Output.IMAGENET_MAP]).max() < 1e-2
        else:
            assert meta.kind == "breeds" and set(got) == {Output.BREED_LOGITS}
            T = meta.temperature
            assert np.abs(softmax(got[Output.BREED_LOGITS], T) - softmax(want[Output.BREED_LOGITS], T)).max() < 1e-4


def test_detector_backbone_is_the_unchanged_imagenet_model():
    net, meta = _torch_twin(default_model_dir() / DETECTOR_FILE)
    original = load_backbone(meta.backbone).state_dict()
    for k, v in net.net.state_dict().items():
        assert torch.equal(v, original[k]), k

