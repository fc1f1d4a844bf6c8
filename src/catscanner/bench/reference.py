"""The reference pipeline of ``catscan bench``: two ResNet-50s in PyTorch eager mode on the CPU.

* an ImageNet detector (ResNet-50, 1000-way ``fc``): top-1 class 281-285 = cat;
* a second ResNet-50 whose ``fc`` is the reference head (2048 -> 512 -> 256 -> 12, ReLU between).

Weights are randomly initialised (``torch.manual_seed(0)``): speed does not depend on them. It
decodes like Cat Scanner (``decode_image`` with JPEG draft decoding, here to the 256-px short side
that ResNet-50's 224 centre crop needs) and preprocesses with torchvision's ResNet-50 recipe (resize,
224 centre crop). It looks only at the centre crop, whatever the photo's shape: it is not a
whole-frame detector. The breed network runs on every photo (``breeds_mode="always"``, the default)
or only on photos whose ground truth is a cat (``"cats"``: a perfect detector stands in for the
randomly initialised one, which never says cat).

Only the reference worker process imports this module (and PyTorch).
"""

from __future__ import annotations

import time

import numpy as np

BREEDS_MODES = ("always", "cats")


class Reference:
    """scan(bytes) / scan_many(bytes...) like :class:`~catscanner.runtime.scanner.Scanner`; results are dicts."""

    def __init__(self, threads: int, breeds_mode: str = "always"):
        import torch
        from torch import nn

        from ..runtime.imagenet import CAT_CLASSES
        from ..training.backbones import BACKBONES, BreedNet, ResNet50

        if breeds_mode not in BREEDS_MODES:
            raise ValueError(f"breeds_mode must be one of {BREEDS_MODES}")
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        self.threads = threads
        self.detector = ResNet50().eval()  # ImageNet-shaped: 1000-way fc
        breed_backbone = ResNet50()
        breed_backbone.fc = nn.Identity()  # replaced by the reference head below
        self.breeds = BreedNet(breed_backbone, head="mlp3").eval()  # 2048 -> 512 -> 256 -> 12
        self.spec = BACKBONES["resnet50"].preprocess
        self.cat_classes = torch.tensor(CAT_CLASSES)
        self.breeds_mode = breeds_mode

    def describe(self) -> dict:
        torch = self.torch
        return {
            "description": "Reference: 2x ResNet-50, PyTorch eager (inference_mode), RANDOM weights, "
                           "breed head 2048-512-256-12; centre crop 224 (not whole-frame)",
            "weights": "random init (torch.manual_seed(0)); speed does not depend on the weights",
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "breeds_mode": self.breeds_mode,
            "breeds_mode_note": (
                "breed ResNet-50 runs on EVERY photo (simplest fair upper bound; the real reference "
                "runs it only when its detector says cat)"
                if self.breeds_mode == "always" else
                "breed ResNet-50 runs only on photos labelled cat (a perfect detector stands in for "
                "the randomly initialised one)"),
            "decode": f"decode_image, JPEG draft to short side {self.spec.decode_hint}, then "
                      f"{self.spec.size}x{self.spec.size} centre crop",
        }

    def _decode(self, data: bytes):
        from ..runtime.decoding import decode_image
        from ..runtime.preprocessing import preprocess

        t0 = time.perf_counter()
        img = decode_image(data, draft_short_side=self.spec.decode_hint)
        return preprocess(img, self.spec), (time.perf_counter() - t0) * 1000

    def _run(self, x, truth_cat: list[bool]) -> list[dict]:
        torch = self.torch
        t0 = time.perf_counter()
        with torch.inference_mode():
            p = torch.softmax(self.detector(x), dim=1)
            is_cat = torch.isin(p.argmax(dim=1), self.cat_classes).tolist()
            top_p, top_i = p.topk(5, dim=1)
            t1 = time.perf_counter()
            if self.breeds_mode == "always":
                chosen = list(range(len(is_cat)))
            else:
                chosen = [i for i, c in enumerate(truth_cat) if c]
            breed_p = torch.softmax(self.breeds(x[chosen]), dim=1) if chosen else None
            t2 = time.perf_counter()
        by_row = dict(zip(chosen, breed_p.tolist())) if chosen else {}
        n = len(is_cat)
        return [{
            "is_cat": is_cat[i],
            "imagenet_top": list(zip(top_i[i].tolist(), top_p[i].tolist())),
            "breeds": by_row.get(i),
            "detect_ms": (t1 - t0) * 1000 / n,
            "classify_ms": (t2 - t1) * 1000 / max(1, len(chosen)) if i in by_row else 0.0,
        } for i in range(n)]

    def scan(self, data: bytes, truth_cat: bool = True) -> dict:
        arr, decode_ms = self._decode(data)
        r = self._run(self.torch.from_numpy(arr)[None], [truth_cat])[0]
        r["decode_ms"] = decode_ms
        return r

    def scan_many(self, datas, truth: list[bool], batch_size: int = 8) -> list[dict]:
        out, arrs, cats, dec = [], [], [], []
        for data, t in zip(datas, truth):
            arr, ms = self._decode(data)
            arrs.append(arr), cats.append(t), dec.append(ms)
            if len(arrs) >= batch_size:
                out += self._flush(arrs, cats, dec)
                arrs, cats, dec = [], [], []
        if arrs:
            out += self._flush(arrs, cats, dec)
        return out

    def _flush(self, arrs, cats, dec) -> list[dict]:
        rows = self._run(self.torch.from_numpy(np.stack(arrs)), cats)
        for r, ms in zip(rows, dec):
            r["decode_ms"] = ms
        return rows
