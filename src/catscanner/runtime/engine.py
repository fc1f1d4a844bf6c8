"""Running an exported model: one interface (:class:`Model`), two runtimes.

``load_model(path, threads, runtime="auto", precision="auto")`` reads the same ``.onnx`` file with

* **ONNX Runtime** (``runtime="onnxruntime"``): full graph optimisation, ``threads`` intra-op
  threads that sleep instead of spinning; float32 only.
* **OpenVINO** (``runtime="openvino"``, ``pip install "catscanner[openvino]"``): the ONNX file
  compiled for the CPU with ``INFERENCE_NUM_THREADS=threads`` and ``PERFORMANCE_HINT=LATENCY``
  (``streams=N``: N streams of ``threads`` threads, for N threads calling at once), once, keeping the file's dynamic dimensions (batch; a whole-frame detector's height and width),
  in bfloat16 where the CPU computes it natively (AVX-512 BF16 or AMX) and float32 elsewhere
  (``auto_bf16=False``: float32 unless bf16 is asked for by name; the scanner's detector).

``"auto"`` takes the environment variable ``CATSCAN_RUNTIME`` / ``CATSCAN_PRECISION`` when set,
else OpenVINO when it is installed and the CPU computes bf16 natively (issue 9 measured it 2-3x
faster there), else ONNX Runtime (OpenVINO if it is the only one installed); an explicit argument
wins over the environment. A runtime asked for by name and not installed, or a precision the
runtime or CPU cannot give, raises :class:`~catscanner.errors.ModelError`. When ``"auto"`` chose
OpenVINO and OpenVINO cannot read a model (e.g. a graph exported with ONNX opset 17
``ReduceLogSumExp``, which OpenVINO's ONNX reader gets wrong), that model falls back to ONNX Runtime
with a warning. ``CATSCAN_CACHE_DIR`` (optional) is where OpenVINO keeps compiled models between
processes (compiling at start-up ~5x faster; ~45 MB per model).

Every model records what it runs on: ``model.runtime``, ``model.precision``, ``model.threads``,
``model.describe()`` (for the benchmark report), and ``model.fallback_reason``.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError
from .contract import INPUT, META_KEY, ModelMeta

if TYPE_CHECKING:
    from .preprocessing import Preprocess

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
RUNTIMES = (OPENVINO, ONNXRUNTIME)  # in the order "auto" prefers them
F32, BF16 = "f32", "bf16"
PRECISIONS = (F32, BF16)
AUTO = "auto"
ENV_RUNTIME = "CATSCAN_RUNTIME"
ENV_PRECISION = "CATSCAN_PRECISION"
ENV_CACHE_DIR = "CATSCAN_CACHE_DIR"
_PIP_NAME = {ONNXRUNTIME: "onnxruntime", OPENVINO: '"catscanner[openvino]" (or: pip install openvino)'}


class Model:
    """An exported model ready to run: ``run(batch) -> {output name: array}``, its :class:`ModelMeta`,
    and what it runs on (``runtime``, ``precision``, ``threads``)."""

    runtime: str
    precision: str
    path: Path
    meta: ModelMeta
    threads: int | None
    output_names: list[str]
    input_shape: tuple[int | None, ...]  # (N, 3, H, W) as exported, None where dynamic
    fallback_reason: str | None = None  # why "auto" did not get the runtime it chose first

    @property
    def preprocess(self) -> "Preprocess":
        return self.meta.preprocess

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs for a preprocessed batch (N, 3, H, W), by name (see :class:`~.contract.Output`)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What this model runs on, for reports: runtime, its version, precision, threads, file."""
        info = {"runtime": self.runtime, "version": runtime_version(self.runtime), "precision": self.precision,
                "threads": self.threads, "model": self.path.name}
        if getattr(self, "streams", None):
            info["streams"] = self.streams
        if self.fallback_reason:
            info["fallback_reason"] = self.fallback_reason
        return info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} on {self.runtime} {self.precision}, threads={self.threads}>"


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Model file {path} not found: reinstall catscanner or pass the right model folder.")
    return path


def _read_meta(raw: str | None, path: Path) -> ModelMeta:
    if raw is None:
        raise ModelError(f"{path} has no '{META_KEY}' metadata: it is not a Cat Scanner model (export one with catscan export-breeds or catscan fit-detector).")
    return ModelMeta.from_json(raw, str(path))


# --------------------------------------------------------------------------- ONNX Runtime


class OrtModel(Model):
    """An ONNX Runtime CPU session (float32) plus the model's :class:`ModelMeta`."""

    runtime = ONNXRUNTIME
    precision = F32

    def __init__(self, path: str | Path, threads: int | None = None):
        path = _check_file(path)
        ort = _import(ONNXRUNTIME)
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
        self.path = path
        self.threads = threads
        self.meta = _read_meta(self.session.get_modelmeta().custom_metadata_map.get(META_KEY), path)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_shape = tuple(d if isinstance(d, int) else None for d in self.session.get_inputs()[0].shape)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {INPUT: np.ascontiguousarray(batch, dtype=np.float32)})
        return dict(zip(self.output_names, outputs))


# --------------------------------------------------------------------------- OpenVINO


@lru_cache(maxsize=1)
def _ov_core():
    return _import(OPENVINO).Core()


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bfloat16 natively on this CPU (AVX-512 BF16 or AMX).
    False when OpenVINO is not installed."""
    try:
        return "BF16" in _ov_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except ModelError:
        return False


class OpenVinoModel(Model):
    """The model file (``.onnx``, or an OpenVINO IR ``.xml``) compiled by OpenVINO for the CPU.

    By default the model is compiled once with the shapes it was exported with (dynamic batch; a
    whole-frame detector's dynamic height and width too): OpenVINO's CPU plugin then prepares its
    kernels for each new input shape on its first run (tens of ms) and keeps them.
    ``static_shapes=True`` instead compiles one model per input shape (about a second each here),
    keeping the ``max_shapes`` most recently used. Each calling thread gets its own infer request,
    so ``run`` may be called from several threads at once (the web server's workers).
    """

    runtime = OPENVINO

    def __init__(self, path: str | Path, threads: int | None = None, precision: str | None = AUTO,
                 static_shapes: bool = False, max_shapes: int = 16, streams: int | None = None):
        path = _check_file(path)
        ov = _import(OPENVINO)
        core = _ov_core()
        try:
            self._model = core.read_model(str(path))
        except Exception as e:  # RuntimeError / OpConversionFailure from the ONNX reader
            raise ModelError(f"OpenVINO could not read {path}: {_first_lines(e)}") from None
        self.path = path
        self.threads = threads
        info = ["framework", META_KEY]
        self.meta = _read_meta(self._model.get_rt_info(info).astype(str) if self._model.has_rt_info(info) else None, path)
        self.output_names = [o.get_any_name() for o in self._model.outputs]
        self.input_shape = tuple(d.get_length() if d.is_static else None for d in self._model.inputs[0].get_partial_shape())
        if [i.get_any_name() for i in self._model.inputs] != [INPUT]:
            raise ModelError(f"{path} should have one input named {INPUT!r}.")
        wanted = choose_precision(OPENVINO, precision)
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": wanted}
        # One OpenVINO stream runs one inference at a time: with PERFORMANCE_HINT=LATENCY (one
        # stream) a sync inference runs in the calling thread under the stream's lock, so callers of
        # run() from several threads (the web server's workers sharing one Scanner) queue behind each
        # other. streams=N compiles N streams of `threads` threads each; inferences are then handed
        # to the streams' own threads and N callers run side by side. Not the default: under this
        # project's contended measurements one caller alone ran slower on 2 streams (FINDINGS).
        self.streams = max(1, int(streams or 1))
        if self.streams > 1:
            self.config.update({"NUM_STREAMS": self.streams, "INFERENCE_NUM_THREADS": self.streams * int(threads or 1)})
        else:
            self.config["PERFORMANCE_HINT"] = "LATENCY"
            if threads:
                self.config["INFERENCE_NUM_THREADS"] = int(threads)
        if os.environ.get(ENV_CACHE_DIR):
            self.config["CACHE_DIR"] = os.environ[ENV_CACHE_DIR]
        self.static_shapes, self.max_shapes = static_shapes, max_shapes
        self._compiled: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._ov = ov
        # Compile now, so that a model OpenVINO cannot compile fails here and not at the first
        # photo, and so that the precision it really runs in is known.
        self._quantized = any(op.get_type_name() == "FakeQuantize" for op in self._model.get_ops())
        self.precision = "int8" if self._quantized else wanted  # confirmed by the first compile
        self._dynamic = None if static_shapes else self._compile(self._model)
        if static_shapes and self._model.inputs[0].get_partial_shape()[1:].is_static:
            self._compiled_for((1, *self._model.inputs[0].get_partial_shape()[1:].to_shape()))

    def _compile(self, model):
        try:
            compiled = _ov_core().compile_model(model, "CPU", self.config)
        except Exception as e:
            raise ModelError(f"OpenVINO could not compile {self.path.name}: {_first_lines(e)}") from None
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != self.config["INFERENCE_PRECISION_HINT"]:
            raise ModelError(f"OpenVINO would not run {self.path.name} in {self.config['INFERENCE_PRECISION_HINT']} "
                             f"on this CPU (it chose {got}): use precision='f32' or 'auto'.")
        return compiled

    def _compiled_for(self, shape: tuple[int, ...]):
        if self._dynamic is not None:
            return self._dynamic
        with self._lock:
            compiled = self._compiled.get(shape)
            if compiled is not None:
                self._compiled.move_to_end(shape)
                return compiled
            model = self._model.clone()
            try:
                model.reshape({model.inputs[0]: self._ov.PartialShape(list(shape))})
            except Exception as e:
                raise ModelError(f"{self.path.name} cannot take an input of shape {shape}: {_first_lines(e)}") from None
            compiled = self._compiled[shape] = self._compile(model)
            while len(self._compiled) > self.max_shapes:
                self._compiled.popitem(last=False)
            return compiled

    def _request(self, compiled):
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        entry = requests.get(id(compiled))
        if entry is None or entry[0] is not compiled:
            if len(requests) > self.max_shapes:
                requests.clear()
            entry = requests[id(compiled)] = (compiled, compiled.create_infer_request())
        return entry[1]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        compiled = self._compiled_for(tuple(batch.shape))
        # share_inputs: no copy of the batch (it lives until infer returns); outputs are copied
        # out of the request's buffers, which its next inference reuses.
        result = self._request(compiled).infer({0: batch}, share_inputs=True, share_outputs=False)
        return {name: result[out] for name, out in zip(self.output_names, compiled.outputs)}

    @property
    def compiled_shapes(self) -> list[tuple[int, ...]]:
        """The input shapes compiled so far with ``static_shapes`` (oldest first); empty otherwise."""
        with self._lock:
            return list(self._compiled)


def _first_lines(e: Exception, n: int = 12) -> str:
    return "\n".join(str(e).strip().splitlines()[:n])


# --------------------------------------------------------------------------- choosing


def _import(runtime: str):
    try:
        return importlib.import_module(runtime)
    except ImportError as e:
        raise ModelError(f"The {runtime} runtime is not installed ({e}). Install it with "
                         f"pip install {_PIP_NAME[runtime]}, or choose another runtime "
                         f"({', '.join(RUNTIMES)}; env {ENV_RUNTIME}).") from None


def installed(runtime: str) -> bool:
    """Whether ``runtime`` can be imported (imports it)."""
    try:
        _import(runtime)
        return True
    except ModelError:
        return False


def runtime_version(runtime: str) -> str | None:
    try:
        module = _import(runtime)
    except ModelError:
        return None
    version = getattr(module, "__version__", None) or getattr(module, "get_version", lambda: None)()
    return None if version is None else str(version)


def _normalise(value: str | None, allowed: tuple[str, ...], what: str, env: str) -> str:
    value = (value or AUTO).strip().lower()
    aliases = {"ort": ONNXRUNTIME, "onnx": ONNXRUNTIME, "ov": OPENVINO, "fp32": F32, "float32": F32,
               "bfloat16": BF16}
    value = aliases.get(value, value)
    if value != AUTO and value not in allowed:
        raise ModelError(f"Unknown {what} {value!r}: use one of {', '.join((AUTO,) + allowed)} (argument or env {env}).")
    return value


def choose_runtime(runtime: str | None = AUTO) -> str:
    """The runtime ``runtime`` stands for: itself if named, else ``$CATSCAN_RUNTIME`` if set, else
    the faster one installed for this CPU (:func:`auto_runtime`). Raises ModelError if the named
    one is not installed."""
    runtime = _normalise(runtime, RUNTIMES, "runtime", ENV_RUNTIME)
    if runtime == AUTO:
        runtime = _normalise(os.environ.get(ENV_RUNTIME), RUNTIMES, "runtime", ENV_RUNTIME)
    if runtime != AUTO:
        _import(runtime)
        return runtime
    return auto_runtime()


# Measured (benchmarks/FINDINGS.md, issue 9): OpenVINO in bf16 runs the breed model 2-3x faster than
# ONNX Runtime on a CPU with native bf16; in f32 (AVX2, no bf16) it is no faster, compiles ~3x
# slower at start-up and installs 2.2x larger. So "auto" prefers it only where bf16 is native.
AUTO_OPENVINO_NEEDS_BF16 = True


def auto_runtime() -> str:
    """What "auto" runs on here: OpenVINO when installed and (if AUTO_OPENVINO_NEEDS_BF16) this CPU
    computes bf16 natively; else ONNX Runtime when installed; else OpenVINO."""
    if installed(OPENVINO) and (native_bf16() or not AUTO_OPENVINO_NEEDS_BF16 or not installed(ONNXRUNTIME)):
        return OPENVINO
    if installed(ONNXRUNTIME):
        return ONNXRUNTIME
    raise ModelError(f"No model runtime is installed: pip install onnxruntime, or pip install {_PIP_NAME[OPENVINO]}.")


def choose_precision(runtime: str, precision: str | None = AUTO) -> str:
    """The precision ``precision`` stands for on ``runtime``: itself if named, else
    ``$CATSCAN_PRECISION`` if set, else bf16 where OpenVINO computes it natively, else f32."""
    precision = _normalise(precision, PRECISIONS, "precision", ENV_PRECISION)
    if precision == AUTO:
        precision = _normalise(os.environ.get(ENV_PRECISION), PRECISIONS, "precision", ENV_PRECISION)
    if precision == AUTO:
        return BF16 if runtime == OPENVINO and native_bf16() else F32
    if precision == BF16:
        if runtime != OPENVINO:
            raise ModelError(f"{runtime} runs these models in f32 only: use runtime='openvino' for bf16, or precision='f32'.")
        if not native_bf16():
            raise ModelError("This CPU has no native bf16 (AVX-512 BF16 or AMX), so bf16 would be slower or "
                             "silently f32: use precision='f32' or 'auto'.")
    return precision


def _requested(value: str | None, allowed: tuple[str, ...], what: str, env: str) -> str:
    """The value asked for by argument or else by the environment ("auto" if neither)."""
    value = _normalise(value, allowed, what, env)
    return value if value != AUTO else _normalise(os.environ.get(env), allowed, what, env)


def load_model(path: str | Path, threads: int | None = None, runtime: str | None = AUTO,
               precision: str | None = AUTO, *, streams: int | None = None, auto_bf16: bool = True) -> Model:
    """Load one exported model on ``runtime`` ("auto", "openvino", "onnxruntime") in ``precision``
    ("auto", "f32", "bf16"); see the module docstring for what "auto" picks. ``streams``: OpenVINO
    streams for that many threads calling ``run`` at once (ONNX Runtime needs none). ``auto_bf16``
    False: "auto" means f32 for this model (one whose outputs bf16 moves past what it must keep; bf16
    asked for by name is still given). Raises ModelError."""
    asked_runtime = _requested(runtime, RUNTIMES, "runtime", ENV_RUNTIME)
    asked_precision = _requested(precision, PRECISIONS, "precision", ENV_PRECISION)
    chosen = choose_runtime(asked_runtime)
    # raises for a precision it cannot give
    chosen_precision = F32 if asked_precision == AUTO and not auto_bf16 else choose_precision(chosen, asked_precision)
    if chosen == ONNXRUNTIME:
        return OrtModel(path, threads)
    try:
        return OpenVinoModel(path, threads, chosen_precision, streams=streams)
    except ModelError as e:
        # Only "auto" falls back, and only for a model OpenVINO cannot read or compile.
        if asked_runtime != AUTO or asked_precision != AUTO or not Path(path).is_file() or not installed(ONNXRUNTIME):
            raise
        warnings.warn(f"{e}\nRunning {Path(path).name} on ONNX Runtime instead.", RuntimeWarning, stacklevel=2)
        model = OrtModel(path, threads)
        model.fallback_reason = str(e)
        return model
