"""The whole-frame cat detector: network, training targets and loss (PyTorch).

A small CenterNet-style head (Zhou et al., "Objects as Points", 2019) on the frozen ImageNet
EfficientNet-Lite0: it reads the stride-16 features (end of stage 4, 112 channels) and the
stride-32 head features (1280 channels) and predicts, per stride-16 cell, the probability that a
cat's centre lies there, the box's size and the centre's sub-cell offset. A head of stride 8 also
reads the stride-8 features (end of stage 3, 40 channels) and predicts per stride-8 cell: a cat
15 % of the short side of a 50,000-pixel first pass is 1-2 stride-16 cells wide. The exported graph
(:class:`WholeFrameDetectorNet`) also returns the ImageNet logits of the whole photo and the
per-cell ImageNet logits of the animal classes (dogs, house cats, wild cats), which the runtime
uses for the reference rule, the labels it shows and to tell wild cats from house cats.

The backbone is never trained: only the head (about 0.38 M parameters; the shipped detector averages
three, :class:`HeadEnsemble`), on cached features.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import EfficientNetLite

STRIDES = (8, 16)  # heat-map strides a head can have
FINE_TAP_BLOCK = 4  # output of block 4 = end of stage 3 of Lite0: 40 channels at stride 8
TAP_BLOCK = 10  # output of block 10 = end of stage 4 of Lite0: 112 channels at stride 16


def backbone_taps(net: EfficientNetLite, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(stride-8 features (N, 40, H/8, W/8), stride-16 features (N, 112, H/16, W/16), stride-32 head
    features (N, 1280, H/32, W/32))."""
    x = F.relu6(net._bn0(net._conv_stem(x)))
    c3 = c4 = None
    for i, block in enumerate(net._blocks):
        x = block(x)
        if i == FINE_TAP_BLOCK:
            c3 = x
        if i == TAP_BLOCK:
            c4 = x
    return c3, c4, F.relu6(net._bn1(net._conv_head(x)))


class Taps(nn.Module):
    """The frozen backbone's three feature maps (exported alone to cache features for training)."""

    def __init__(self, net: EfficientNetLite):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return backbone_taps(self.net, x)


class CatHead(nn.Module):
    """stride-8, stride-16 and stride-32 features -> (centre logits (N,1,h,w), log size (N,2,h,w),
    offset (N,2,h,w)) per cell of ``stride`` (16: the stride-8 features are not read; 8: the fused
    stride-16 map, upsampled, plus the stride-8 features, through one more 3x3 convolution of
    ``fine`` channels). ``fine_input``: a stride-16 head also reads the stride-8 features, through a
    strided 3x3 convolution added to the fused map (detail for cats of 1-2 cells)."""

    def __init__(self, mid: int = 96, dilations: tuple[int, ...] = (1, 1, 2), dropout: float = 0.0,
                 stride: int = 16, fine: int = 32, fine_input: bool = False):
        super().__init__()
        if stride not in STRIDES:
            raise ValueError(f"stride must be one of {STRIDES} (got {stride})")
        self.config = {"mid": mid, "dilations": list(dilations), "dropout": dropout,
                       "stride": stride, "fine": fine if stride == 8 else 0}  # stored in the model's metadata
        if fine_input and stride == 16:
            self.config["fine_input"] = True
        self.stride = stride
        self.fine_input = fine_input and stride == 16
        self.dropout = dropout  # on the input features, in training only
        self.l5 = nn.Conv2d(1280, mid, 1)
        self.l4 = nn.Conv2d(112, mid, 1)
        if self.fine_input:
            self.l3s = nn.Conv2d(40, mid, 3, stride=2, padding=1)
            nn.init.zeros_(self.l3s.weight)  # starts as the stride-16 head: unscaled stride-8 features
            nn.init.zeros_(self.l3s.bias)  # made the first epochs diverge (loss 3.0 -> 4.5)
        layers: list[nn.Module] = []
        for d in dilations:  # 3x3 convolutions; the last ones dilated to see more context
            layers += [nn.Conv2d(mid, mid, 3, padding=d, dilation=d), nn.ReLU()]
        self.fuse = nn.Sequential(*layers)
        out = mid
        if stride == 8:
            self.down = nn.Conv2d(mid, fine, 1)
            self.l3 = nn.Conv2d(40, fine, 1)
            self.fine = nn.Sequential(nn.Conv2d(fine, fine, 3, padding=1), nn.ReLU())
            out = fine
        self.heat = nn.Conv2d(out, 1, 1)
        self.size = nn.Conv2d(out, 2, 1)
        self.off = nn.Conv2d(out, 2, 1)
        nn.init.constant_(self.heat.bias, -4.0)

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.training and self.dropout:
            c4, c5 = F.dropout(c4, self.dropout), F.dropout(c5, self.dropout)
            c3 = F.dropout(c3, self.dropout) if self.stride == 8 or self.fine_input else c3
        p = self.l4(c4) + F.interpolate(self.l5(c5), scale_factor=2.0, mode="nearest")
        if self.fine_input:
            p = p + self.l3s(c3)
        p = self.fuse(F.relu(p))
        if self.stride == 8:
            p = self.fine(F.relu(self.l3(c3) + F.interpolate(self.down(p), scale_factor=2.0, mode="nearest")))
        return self.heat(p), self.size(p), self.off(p)


class HeadEnsemble(nn.Module):
    """Several :class:`CatHead` alike, trained from different seeds, read as one head: the average
    of their heat-map probabilities (returned as its logit, as one head returns it), box sizes and
    offsets. A head trained on fixed features ends far below its first loss and differs from seed to
    seed; the average of a few is steadier. Each head adds its own work to every run of the graph."""

    def __init__(self, heads: list[CatHead]):
        super().__init__()
        if len(heads) < 2 or len({json.dumps(h.config, sort_keys=True) for h in heads}) != 1:
            raise ValueError("an ensemble needs two or more heads of one configuration")
        self.heads = nn.ModuleList(heads)
        self.config = {**heads[0].config, "heads": len(heads)}  # stored in the model's metadata

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heat, size, off = zip(*(h(c3, c4, c5) for h in self.heads))
        p = torch.stack([torch.sigmoid(x) for x in heat]).mean(0).clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p), torch.stack(size).mean(0), torch.stack(off).mean(0)


def make_head(config: dict) -> nn.Module:
    """An untrained head of a stored configuration (the model metadata's ``head``): a
    :class:`CatHead`, or a :class:`HeadEnsemble` of ``config["heads"]`` of them."""
    config = dict(config)
    n = int(config.pop("heads", 1))
    return CatHead(**config) if n == 1 else HeadEnsemble([CatHead(**config) for _ in range(n)])


class WholeFrameDetectorNet(nn.Module):
    """image (N, 3, H, W), H and W multiples of 32 -> the outputs named in ``runtime.contract.DETECTOR_OUTPUTS``:
    cat heat map (probabilities), box size, box offset, ImageNet logits, ImageNet logits per cell."""

    def __init__(self, net: EfficientNetLite, head: nn.Module):
        super().__init__()
        self.net = net
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c3, c4, c5 = backbone_taps(self.net, x)
        heat, size, off = self.head(c3, c4, c5)
        fc = self.net.classifier
        logits = fc(self.net.pool(c5))
        per_cell = F.conv2d(c5, fc.weight[:, :, None, None], fc.bias)  # the classifier on every cell
        return torch.sigmoid(heat), size, off, logits, per_cell


# --------------------------------------------------------------------------- training


def targets(cats: list[tuple[float, float, float, float]], in_size: tuple[int, int], stride: int = 16):
    """CenterNet targets for boxes given as fractions (l, t, r, b) of an input of ``in_size`` (W, H):
    a Gaussian heat map (1 at each centre cell) and, per cat, (row, col, log w, log h, dx, dy) in
    cells of ``stride`` input pixels."""
    W, H = in_size
    h, w = H // stride, W // stride
    heat = np.zeros((h, w), np.float32)
    reg = []
    yy, xx = np.mgrid[0:h, 0:w]
    for (l, t, r, b) in cats:
        bw, bh = (r - l) * W / stride, (b - t) * H / stride
        cx, cy = (l + r) / 2 * W / stride, (t + b) / 2 * H / stride
        ix, iy = min(w - 1, int(cx)), min(h - 1, int(cy))
        sx, sy = max(0.5, bw / 6), max(0.5, bh / 6)
        heat = np.maximum(heat, np.exp(-((xx - ix) ** 2) / (2 * sx * sx) - ((yy - iy) ** 2) / (2 * sy * sy)))
        heat[iy, ix] = 1.0
        reg.append((iy, ix, math.log(bw), math.log(bh), cx - ix - 0.5, cy - iy - 0.5))
    return heat, reg


def focal_loss(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on the heat map."""
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    lp = -torch.log(p) * (1 - p) ** 2 * pos
    ln = -torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * (1 - pos)
    return (lp.sum() + ln.sum()) / pos.sum().clamp(min=1)


def batches(records: list[dict], size: int, rng: np.random.Generator | None = None) -> list[list[dict]]:
    """Records grouped by input shape into batches (shuffled when ``rng`` is given)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r["in_size"]), []).append(r)
    out = []
    for g in groups.values():
        idx = rng.permutation(len(g)) if rng is not None else np.arange(len(g))
        out += [[g[j] for j in idx[i:i + size]] for i in range(0, len(g), size)]
    return [out[i] for i in rng.permutation(len(out))] if rng is not None else out


def _collate(batch: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(np.stack([r[k] for r in batch]).astype(np.float32)) for k in ("c3", "c4", "c5"))


def train_head(records: list[dict], epochs: int = 20, batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
               progress=None, dropout: float = 0.0, stride: int = 16, fine_input: bool = False) -> CatHead:
    """Train a :class:`CatHead` on cached feature records (``c3``, ``c4``, ``c5``, ``in_size``,
    ``cats``); ``dropout``: share of the input features zeroed at each step (a regulariser for
    features that never change from epoch to epoch); ``stride``: of its heat map (8 or 16);
    ``fine_input``: see :class:`CatHead`."""
    torch.manual_seed(seed)
    for r in records:
        r["target"] = targets(r["cats"], r["in_size"], stride)
    head = CatHead(dropout=dropout, stride=stride, fine_input=fine_input)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    steps = epochs * len(batches(records, batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    epochs_iter = progress(range(epochs), desc="training the detector head") if progress else range(epochs)
    for _ in epochs_iter:
        head.train()
        total = 0.0
        for b in batches(records, batch_size, rng):
            heat, size, off = head(*_collate(b))
            loss = focal_loss(heat, torch.from_numpy(np.stack([r["target"][0] for r in b]))[:, None])
            reg = [(i, *t) for i, r in enumerate(b) for t in r["target"][1]]
            if reg:
                R = torch.tensor(reg, dtype=torch.float32)
                n, y, x = R[:, 0].long(), R[:, 1].long(), R[:, 2].long()
                loss = loss + F.smooth_l1_loss(size[n, :, y, x], R[:, 3:5], beta=0.1) \
                    + F.smooth_l1_loss(off[n, :, y, x], R[:, 5:7], beta=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        if progress and hasattr(epochs_iter, "set_postfix"):
            epochs_iter.set_postfix(loss=total / len(records))
    for r in records:
        del r["target"]
    return head.eval()


def train_heads(records: list[dict], heads: int = 1, seed: int = 0, progress=None, **kwargs) -> nn.Module:
    """:func:`train_head` once (``heads`` = 1) or ``heads`` times from seeds ``seed``, ``seed`` + 1, ...
    as one :class:`HeadEnsemble` (the first is the one head of ``seed``)."""
    if heads < 1:
        raise ValueError(f"heads must be at least 1 (got {heads})")

    def bar(k: int):
        if progress is None or heads == 1:
            return progress
        return lambda it, desc: progress(it, desc=f"{desc} {k + 1} of {heads}")

    trained = [train_head(records, seed=seed + k, progress=bar(k), **kwargs) for k in range(heads)]
    return trained[0] if heads == 1 else HeadEnsemble(trained).eval()


@torch.no_grad()
def head_outputs(head: nn.Module, classifier: nn.Linear, records: list[dict]) -> list[dict[str, np.ndarray]]:
    """The exported graph's outputs (heat map, size, offset, ImageNet logits per cell and of the
    whole photo) computed from
    cached features, one record at a time, as the runtime reads them."""
    from ..runtime.contract import Output

    out = []
    for r in records:
        c3, c4, c5 = _collate([r])
        heat, size, off = head(c3, c4, c5)
        per_cell = F.conv2d(c5, classifier.weight[:, :, None, None], classifier.bias)
        out.append({Output.CAT_HEATMAP: torch.sigmoid(heat).numpy(), Output.BOX_SIZE: size.numpy(),
                    Output.BOX_OFFSET: off.numpy(), Output.IMAGENET_MAP: per_cell.numpy(),
                    # the classifier on the average-pooled features = the average of its per-cell logits
                    Output.IMAGENET_LOGITS: per_cell.mean(dim=(2, 3)).numpy()})
    return out
