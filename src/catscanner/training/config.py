"""Training options: one dataclass, the single source of ``catscan train``'s flags (no PyTorch here)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


VAL_FRACTION = 0.15  # the default share held out for validation (unused with --folds)


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every training option; ``catscan train`` has one flag per field (generated from this class)."""

    data: str = _opt("", "Oxford-IIIT Pet folder (default: $CATSCAN_DATA/oxford-iiit-pet or ../shared/data/oxford-iiit-pet).")
    out: str = _opt("runs/breeds", "Run folder: checkpoints, metrics.json, training_curves.png.")
    backbone: str = _opt("efficientnet_lite0", "efficientnet_lite0/1/2 or resnet50.")
    image_size: int = _opt(0, "Input size; 0: the backbone's own.")
    head: str = _opt("mlp3", "mlp3 (reference: 3 FC layers with ReLU) or linear.")
    epochs: int = _opt(12, "Training epochs.")
    batch_size: int = _opt(32, "Photos per step.")
    lr_head: float = _opt(1e-3, "Learning rate of the new head.")
    lr_backbone: float = _opt(2e-4, "Learning rate of the pretrained backbone.")
    weight_decay: float = _opt(0.02, "AdamW weight decay (on weights with >= 2 dimensions only).")
    warmup_epochs: float = _opt(1.0, "Linear warm-up, in epochs; cosine decay after.")
    label_smoothing: float = _opt(0.1, "Label smoothing of the cross-entropy.")
    mixup: float = _opt(0.0, "Mixup strength: Beta(a, a); 0 = off.")
    crop_scale: float = _opt(0.3, "RandomResizedCrop: smallest share of the image area.")
    color_jitter: float = _opt(0.2, "Brightness/contrast/saturation jitter.")
    photos: str = _opt("trainval", "Photos to learn from: trainval, or all (trainval + test, 2,100 cats: the shipped model, once the recipe is chosen by cross-validation).")
    folds: int = _opt(0, "k of a stratified k-fold over --photos; fold --fold is then the validation set (--val-fraction unused).")
    fold: int = _opt(0, "The held-out fold (0..k-1) when --folds is set.")
    keep: str = _opt("best", "Which epoch to keep: best (highest validation accuracy) or last. Without a validation set: last.")
    temperature: float = _opt(0.0, "Softmax temperature to store when there is no validation set (from catscan cross-validate); 0: fit it on validation.")
    val_fraction: float = _opt(VAL_FRACTION, "Share of --photos held out for validation (per breed); 0: none.")
    val_seed: int = _opt(0, "Which trainval photos are held out (kept apart from --seed).")
    seed: int = _opt(0, "Random seed of the training run.")
    limit: int = _opt(0, "Use only this many training photos (quick checks, tests); 0 = all.")
    threads: int = _opt(2, "PyTorch CPU threads.")
    weights: str | None = _opt(None, "Local backbone weights (.pth), for resnet50.")
    init_from: str = _opt("", "Start from the weights of this breed checkpoint (best.pt of catscan train; "
                              "'{fold}' becomes --fold) instead of ImageNet's: fine-tuning a trained model, "
                              "e.g. a last epoch at a higher --image-size.")

    def __post_init__(self) -> None:
        """Refuse what cannot train (a ValueError naming the flag): types from a JSON --config, and values
        that would end in a division by zero, an empty run or silently wrong results."""
        for f in fields(self):
            value, kind = getattr(self, f.name), f.type
            wanted = {"int": int, "float": (int, float), "str": str, "str | None": (str, type(None))}[kind]
            if isinstance(value, bool) or not isinstance(value, wanted):
                raise ValueError(f"--{_flag(f.name)} must be {kind.replace(' | None', '')}, not {value!r}")
        checks = [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.threads >= 1, "--threads must be at least 1"),
            (self.limit >= 0, "--limit must be 0 (all photos) or more"),
            (self.image_size >= 0, "--image-size must be 0 (the backbone's own) or more"),
            (0.0 <= self.val_fraction < 1.0, "--val-fraction must be at least 0 and below 1"),
            (self.temperature >= 0.0, "--temperature must be positive (0: fit it on the validation set)"),
            (min(self.lr_head, self.lr_backbone, self.weight_decay, self.warmup_epochs, self.label_smoothing,
                 self.mixup, self.color_jitter) >= 0.0,
             "--lr-head, --lr-backbone, --weight-decay, --warmup-epochs, --label-smoothing, --mixup and "
             "--color-jitter must not be negative"),
            (0.0 < self.crop_scale <= 1.0, "--crop-scale must be above 0 and at most 1"),
            (self.folds == 0 or self.folds >= 2, "--folds must be 0 (no k-fold) or at least 2"),
            (self.folds > 0 or self.fold == 0, "--fold needs --folds (the number of folds it is one of)"),
            (self.folds == 0 or 0 <= self.fold < self.folds, f"--fold must be from 0 to {self.folds - 1} (--folds {self.folds})"),
            (self.folds == 0 or self.val_fraction == VAL_FRACTION,
             "--val-fraction is not used with --folds: the fold --fold is the validation set"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_stored(cls, stored: dict) -> "TrainConfig":
        """The config a checkpoint or exported model recorded; keys this version does not know are
        ignored (models written by other versions)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in known})

    def changed_from(self, stored: dict, may_differ: tuple[str, ...]) -> list[str]:
        """What differs between the config a run ``stored`` (a checkpoint's, a fold's metrics.json) and
        this one, as ``--flag old -> new``, leaving out the fields in ``may_differ``."""
        now = asdict(self)
        return [f"--{_flag(k)} {stored[k]!r} -> {now[k]!r}" for k in now
                if k not in may_differ and k in stored and stored[k] != now[k]]

    @classmethod
    def from_json(cls, path: str | Path, defaults: dict | None = None, **overrides) -> "TrainConfig":
        """The config in the JSON file at ``path``, over ``defaults``, under the ``overrides`` that are set."""
        known = {f.name for f in fields(cls)}
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        except OSError as e:
            raise ValueError(f"--config {path}: cannot be read ({e.strerror or e})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"--config {path}: not a JSON file ({e})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"--config {path}: must hold a JSON object of TrainConfig fields, e.g. {{\"epochs\": 7}}")
        bad = set(raw) - known
        if bad:
            raise ValueError(f"{path}: unknown config keys {sorted(bad)}")
        return cls(**{**(defaults or {}), **raw, **{k: v for k, v in overrides.items() if v is not None}})


def _flag(name: str) -> str:
    return name.replace("_", "-")
