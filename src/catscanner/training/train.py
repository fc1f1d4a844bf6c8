"""Fine-tune a breed classifier on the Oxford cats (PyTorch; ``pip install 'catscanner[train]'``).

One command, ``catscan train``: by default a validation set is carved out of ``trainval`` (``test``
is never read then); ``--folds k --fold i`` holds out one fold of a stratified k-fold instead (see
:mod:`.crossval`), and ``--photos all --val-fraction 0`` trains the shipped model on every labelled
cat. Every epoch saves a checkpoint (resumable), per-epoch metrics as JSON and a training-curve
PNG; the best (or last) epoch is kept, then a softmax temperature is fitted on validation for
calibrated percentages (or taken from ``--temperature``), and the validation logits are saved.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

from ..errors import CatScannerError
from ..progress import progress_bar
from ..runtime.breeds import BREEDS
from ..runtime.decoding import load_image
from ..runtime.preprocessing import Preprocess, normalize, preprocess
from .backbones import BreedNet, backbone_spec, create_backbone, load_backbone
from .checkpoint import read_breed_checkpoint
from .config import TrainConfig
from .data import training_items


def train_preprocess(cfg: TrainConfig) -> Preprocess:
    """The input size and crop a training run uses: the backbone's own, or ``cfg.image_size``."""
    spec = backbone_spec(cfg.backbone).preprocess
    if cfg.image_size and cfg.image_size != spec.size:
        size = cfg.image_size
        crop = size / (size + 32) if cfg.backbone.startswith("efficientnet") else spec.crop_fraction
        spec = Preprocess(size, crop, spec.mean, spec.std, spec.resample)
    return spec


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None  # None: the epoch was not measured on validation photos
    val_accuracy: float | None
    lr_head: float
    seconds: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class PhotoSet:
    """Photos decoded once into memory (short side ~1.3x the model size) with their labels."""

    def __init__(self, items, spec: Preprocess, desc: str):
        keep = math.ceil(spec.size * 1.3)
        self.images: list[Image.Image] = []
        self.labels = np.array([it.label for it in items], dtype=np.int64)
        for it in progress_bar(items, desc=f"decoding {desc}"):
            img = load_image(it.path, draft_short_side=keep)
            w, h = img.size
            s = keep / min(w, h)
            if s < 1:
                img = img.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC)
            self.images.append(img)

    def __len__(self) -> int:
        return len(self.images)


def augment(img: Image.Image, spec: Preprocess, cfg: TrainConfig, rng: random.Random) -> np.ndarray:
    """RandomResizedCrop + horizontal flip + brightness/contrast/saturation jitter."""
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(cfg.crop_scale, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        cw = ch = min(w, h)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
    out = img.resize((spec.size, spec.size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    j = cfg.color_jitter
    if j > 0:
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            out = enhancer(out).enhance(rng.uniform(1 - j, 1 + j))
    return normalize(out, spec)


def eval_batches(photos: PhotoSet, spec: Preprocess, batch_size: int):
    for i in range(0, len(photos), batch_size):
        x = np.stack([preprocess(img, spec) for img in photos.images[i:i + batch_size]])
        yield torch.from_numpy(x), torch.from_numpy(photos.labels[i:i + batch_size])


@torch.no_grad()
def predict_logits(model: torch.nn.Module, photos: PhotoSet, spec: Preprocess, batch_size: int = 32) -> np.ndarray:
    model.eval()
    out = [model(x.contiguous(memory_format=torch.channels_last)) for x, _ in eval_batches(photos, spec, batch_size)]
    return torch.cat(out).numpy()


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The softmax temperature that minimises validation NLL (temperature scaling)."""
    z, y = torch.from_numpy(logits).double(), torch.from_numpy(labels)
    grid = np.exp(np.linspace(math.log(0.3), math.log(5.0), 200))
    nll = [F.cross_entropy(z / t, y).item() for t in grid]
    return float(grid[int(np.argmin(nll))])


def param_groups(model: BreedNet, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: backbone and head at their own learning rates; weight decay only on weights
    with at least 2 dimensions (conv and linear kernels), never on BatchNorm weights or biases."""
    groups = []
    for part, lr in ((model.backbone, cfg.lr_backbone), (model.head, cfg.lr_head)):
        params = [p for p in part.parameters() if p.requires_grad]
        groups.append({"params": [p for p in params if p.ndim >= 2], "lr": lr})
        groups.append({"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0})
    return groups


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def split_items(cfg: TrainConfig) -> tuple[list, list]:
    """(training photos, validation photos) of a run, ``--limit`` applied."""
    train_items, val_items = training_items(cfg)
    if cfg.limit:
        train_items = train_items[:: max(1, len(train_items) // cfg.limit)][: cfg.limit]
        val_items = val_items[:: max(1, len(val_items) // max(12, cfg.limit // 4))]
    return train_items, val_items


def init_weights(cfg: TrainConfig, val_items: list) -> dict:
    """``--init-from``: the weights of a trained breed checkpoint, after checking that it is
    readable, of the same backbone, and did not train on this run's validation photos."""
    path = cfg.init_from.replace("{fold}", str(cfg.fold))
    if "{fold}" in cfg.init_from and not cfg.folds:
        raise CatScannerError(f"--init-from {cfg.init_from}: '{{fold}}' needs --folds (a cross-validation fold).")
    if not Path(path).is_file():
        raise CatScannerError(f"--init-from {path}: no such checkpoint; give a best.pt written by catscan train.")
    try:
        ckpt = read_breed_checkpoint(path)  # readable, and a best.pt with its training config
    except CatScannerError as e:
        raise CatScannerError(f"--init-from: {e}") from None
    source = TrainConfig.from_stored({**ckpt["config"], "data": cfg.data})
    if source.backbone != cfg.backbone:
        raise CatScannerError(f"--init-from {path}: a {source.backbone} model; this run trains {cfg.backbone} (--backbone).")
    if val_items:
        seen = {it.name for it in split_items(source)[0]} & {it.name for it in val_items}
        if seen:
            raise CatScannerError(
                f"--init-from {path}: that model trained on {len(seen)} of this run's {len(val_items)} validation "
                "photos (its --photos/--folds/--fold/--val-seed differ), so validation would score photos it has "
                "seen: start each fold from the model of the same fold, or train without validation.")
    return ckpt["model"]


RESUME_MAY_CHANGE = ("epochs", "threads", "out", "data")  # the rest of a run's config must match its checkpoint's


def _save(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file, then renamed: a run stopped while saving leaves the last
    complete file, never a truncated one."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _resumable(path: Path, cfg: TrainConfig) -> dict:
    """The checkpoint to ``--resume`` from: readable, and made with this run's settings."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: torch raises RuntimeError, EOFError, pickle errors
        raise CatScannerError(f"--resume: {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}). "
                              "Train again without --resume, or into a new --out.") from None
    changed = cfg.changed_from(ckpt.get("config", {}), RESUME_MAY_CHANGE)
    if changed:
        raise CatScannerError(f"--resume: {path} was made with other settings ({', '.join(changed)}). Resume "
                              "with the same flags (only --epochs and --threads may change), or train into a new --out.")
    return ckpt


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train, keep the best (or last) epoch, fit the temperature; returns ``best.pt``."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    spec = train_preprocess(cfg)

    train_items, val_items = split_items(cfg)
    start_weights = init_weights(cfg, val_items) if cfg.init_from else None  # checked before the photos load
    train_set, val_set = PhotoSet(train_items, spec, "train"), PhotoSet(val_items, spec, "validation")
    keep_last = cfg.keep == "last" or not len(val_set)

    # ImageNet weights only when the run starts from them
    backbone = load_backbone(cfg.backbone, cfg.weights) if start_weights is None else create_backbone(cfg.backbone)
    model = BreedNet(backbone, len(BREEDS), cfg.head)
    if start_weights is not None:
        try:
            model.load_state_dict(start_weights)
        except RuntimeError as e:  # another head (--head) or number of breeds
            raise CatScannerError(f"--init-from {cfg.init_from}: its layers do not fit this run's model "
                                  f"(--head {cfg.head}?): {str(e).splitlines()[0]}") from None
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    history: list[dict] = []
    start_epoch, best_acc = 0, -1.0
    kept_logits = None  # validation logits of the kept epoch, when this run measured them
    ckpt_path = out / "checkpoint.pt"
    if resume and not ckpt_path.exists():
        print(f"no {ckpt_path} to resume from: starting at the first epoch")
    elif resume:
        ckpt = _resumable(ckpt_path, cfg)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, history, best_acc = ckpt["epoch"] + 1, ckpt["history"], ckpt["best_accuracy"]
        torch.set_rng_state(ckpt["torch_rng"])
        print(f"resumed from {ckpt_path} after epoch {start_epoch}")

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        rng = random.Random(cfg.seed * 1000 + epoch)
        order = list(range(len(train_set)))
        rng.shuffle(order)
        model.train()
        seen = correct = 0
        loss_sum = 0.0
        bar = progress_bar(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}")
        for b in bar:
            step = epoch * steps_per_epoch + b
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base * _lr_factor(step, total_steps, warmup)
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = torch.from_numpy(np.stack([augment(train_set.images[i], spec, cfg, rng) for i in idx]))
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(train_set.labels[idx])
            lam, perm = 1.0, None
            if cfg.mixup > 0:
                lam = float(np.random.default_rng(step + cfg.seed).beta(cfg.mixup, cfg.mixup))
                perm = torch.randperm(len(idx))
                x = lam * x + (1 - lam) * x[perm]
            logits = model(x)
            loss = lam * F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if perm is not None:
                loss = loss + (1 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(idx)
            bar.set_postfix(loss=loss_sum / seen, acc=correct / seen)

        val_logits = val_loss = val_acc = None  # measured every epoch only when it picks the epoch
        if len(val_set) and (not keep_last or epoch + 1 == cfg.epochs):
            val_logits = predict_logits(model, val_set, spec)
            val_loss = F.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(val_set.labels)).item()
            val_acc = float((val_logits.argmax(1) == val_set.labels).mean())
        m = EpochMetrics(epoch + 1, loss_sum / seen, correct / seen, val_loss, val_acc,
                         optimizer.param_groups[-1]["lr"], time.time() - t0)
        history.append(asdict(m))
        val_text = "not measured" if val_acc is None else f"loss {val_loss:.3f} acc {val_acc:.3f}"
        print(f"epoch {m.epoch}: train loss {m.train_loss:.3f} acc {m.train_accuracy:.3f} | "
              f"val {val_text} | {m.seconds:.0f} s", flush=True)
        if keep_last or val_acc > best_acc:
            best_acc, kept_logits = (val_acc if val_acc is not None else -1.0), val_logits
            _save({"model": model.state_dict(), "epoch": epoch + 1}, out / "best_weights.pt")
        _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
               "history": history, "best_accuracy": best_acc, "torch_rng": torch.get_rng_state(),
               "config": asdict(cfg)}, ckpt_path)
        (out / "metrics.json").write_text(json.dumps({"config": asdict(cfg), "epochs": history}, indent=2))
        plot_curves(history, out / "training_curves.png")

    best = torch.load(out / "best_weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    val_accuracy = None
    if len(val_set):
        # predicted again only when the kept epoch was measured before a resume
        val_logits = kept_logits if kept_logits is not None else predict_logits(model, val_set, spec)
        val_accuracy = float((val_logits.argmax(1) == val_set.labels).mean())
        np.savez(out / "val_predictions.npz", logits=val_logits, labels=val_set.labels,
                 names=np.array([it.name for it in val_items]))
    temperature = cfg.temperature or (fit_temperature(val_logits, val_set.labels) if len(val_set) else 1.0)
    summary = {
        "kept_epoch": best["epoch"],
        "val_accuracy": val_accuracy,
        "temperature": temperature,
        "train_photos": len(train_set),
        "val_photos": len(val_set),
    }
    final = out / "best.pt"
    _save({"model": model.state_dict(), "config": asdict(cfg), "preprocess": spec.to_dict(),
           "breeds": list(BREEDS), "temperature": temperature, "summary": summary}, final)
    (out / "metrics.json").write_text(
        json.dumps({"config": asdict(cfg), "epochs": history, "summary": summary}, indent=2))
    val_text = "no validation set" if val_accuracy is None else f"val accuracy {val_accuracy:.3f}"
    print(f"kept epoch {summary['kept_epoch']}: {val_text}, temperature {temperature:.2f} -> {final}")
    return final


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    # None = not measured (NaN in histories of runs resumed from checkpoints of earlier versions)
    measured = [h for h in history if h["val_accuracy"] is not None and not math.isnan(h["val_accuracy"])]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot([h["epoch"] for h in measured], [h["val_loss"] for h in measured], "o-", label="validation")
    a.set(xlabel="epoch", ylabel="loss", title="Loss")
    b.plot(ep, [h["train_accuracy"] for h in history], "o-", label="train")
    b.plot([h["epoch"] for h in measured], [h["val_accuracy"] for h in measured], "o-", label="validation")
    b.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
