"""Loading an exported ONNX model with ONNX Runtime and the metadata stored inside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import ModelError
from .imaging import Preprocess

META_KEY = "catscanner"


class OnnxModel:
    """An ONNX Runtime CPU session plus the ``catscanner`` metadata JSON saved at export."""

    def __init__(self, path: str | Path, threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"Model file {path} not found: reinstall catscanner or pass the right model folder.")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: with two sessions (detector, breeds) on
        # 2 cores, spinning threads of one starve the other (measured: one-photo scan 33 -> 17 ms).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"Could not load {path}: {e}") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if raw is None:
            raise ModelError(f"{path} has no '{META_KEY}' metadata: export it with catscan export.")
        self.path = path
        self.meta: dict = json.loads(raw)
        self.preprocess = Preprocess.from_dict(self.meta["preprocess"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})

    def run_named(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.run(batch)))
