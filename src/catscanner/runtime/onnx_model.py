"""Running an exported model with ONNX Runtime, and reading the :class:`ModelMeta` inside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ModelError
from .contract import INPUT, META_KEY, ModelMeta


class OnnxModel:
    """An ONNX Runtime CPU session plus the model's :class:`ModelMeta`."""

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
        self.meta = ModelMeta.from_json(raw, str(path))
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def preprocess(self):
        return self.meta.preprocess

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs for a preprocessed batch, by name (see :class:`~.contract.Output`)."""
        outputs = self.session.run(self.output_names, {INPUT: np.ascontiguousarray(batch, dtype=np.float32)})
        return dict(zip(self.output_names, outputs))
