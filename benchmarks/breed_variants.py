"""Compare exported breed models (and their mean ensemble) on the validation or test split.

    python benchmarks/breed_variants.py val runs/onnx/a.onnx runs/onnx/b.onnx

For each model: accuracy, accuracy with flip test-time augmentation, expected calibration error;
then the ensemble (mean of calibrated probabilities) with and without TTA. Used for the "What was
tried" table of src/catscanner/models/MODEL_CARD_breeds.md (select on ``val``, never on ``test``).
"""

import sys

import numpy as np

from catscanner.runtime.breeds import BreedClassifier
from catscanner.runtime.engine import OrtModel
from catscanner.training.data import map_batches, oxford_root
from catscanner.training.evaluate import breed_metrics, breed_split

DATA = oxford_root()


def main(split: str, paths: list[str]) -> None:
    members = []
    for path in paths:
        clf = BreedClassifier(OrtModel(path, 2))
        items = breed_split(DATA, split, clf.model.meta.details["config"])
        y = np.array([it.label for it in items])

        def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            p = clf(batch)
            return p, (p + clf(batch[..., ::-1].copy())) / 2

        outs = map_batches([it.path for it in items], clf.preprocess, run, path)
        p, p_tta = np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])
        print(f"{path}: accuracy {(p.argmax(1) == y).mean():.4f}, with flip TTA {(p_tta.argmax(1) == y).mean():.4f}, "
              f"ECE {breed_metrics(y, p)['ece']:.4f}")
        members.append((p, p_tta))
    if len(members) > 1:
        p, p_tta = np.mean([m[0] for m in members], 0), np.mean([m[1] for m in members], 0)
        print(f"ensemble: accuracy {(p.argmax(1) == y).mean():.4f}, with flip TTA {(p_tta.argmax(1) == y).mean():.4f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
