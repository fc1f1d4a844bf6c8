"""``catscan bench``: Cat Scanner against the reference pipeline, on the same real photos.

Two pipelines, each measured in its own fresh subprocess so that peak memory and cold start
are isolated (``catscanner.bench.main`` with ``--worker ours|reference --job FILE --out FILE``, started
so that each imports only what its pipeline needs):

* **ours** — :class:`catscanner.scanner.Scanner` (ONNX Runtime, EfficientNet-Lite0 detector +
  breed model): bytes -> decode -> detect -> classify -> :class:`ScanResult`.
* **reference** — two ResNet-50s in PyTorch eager mode on CPU: an ImageNet detector (top-1 class
  281-285 = cat) and a second ResNet-50 whose ``fc`` is replaced by the reference head
  (2048 -> 512 -> 256 -> 12, ReLU between). Weights are randomly initialised (speed does not
  depend on them). Same photos, same threads, same decoding (``decode_image`` + ``preprocess``
  with the ResNet-50 preprocessing).

Per pipeline: latency one photo at a time (p50/p95), batch throughput (photos/s), peak RSS of
the worker process (``ru_maxrss`` from ``os.wait4``) and cold start (process spawn to first
result). Photo bytes are read from disk (OS file cache warm) right before each timed call;
reading is outside the latency timer and inside the throughput timer, for both pipelines.

This module must not import PyTorch at import time: the ``ours`` worker never loads it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_PHOTOS = 200
QUICK_PHOTOS = 16
PIPELINES = ("ours", "reference")
REFERENCE_BREEDS_MODES = ("always", "cats")


# =========================================================================== shared helpers


def resolve_data_root(data: str | Path | None = None) -> Path:
    """The Oxford-IIIT Pet folder: ``data``, else from ``$CATSCAN_DATA``, else the shared data."""
    from .training.data import oxford_root

    return oxford_root(data)


def select_photos(items: list, n: int) -> list:
    """``n`` photos spread evenly over the split (every breed, cats and dogs alike), deterministic."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def summarize_ms(values: list[float]) -> dict:
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {}
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "mean": round(float(a.mean()), 2),
        "min": round(float(a.min()), 2),
        "max": round(float(a.max()), 2),
    }


def _rss_now_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _peak_rss_self_mb() -> float:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024, 1)  # Linux: kilobytes


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# =========================================================================== workers


def _worker_ours(job: dict, t_spawn: float) -> dict:
    t_import = time.time()
    from .runtime.scanner import Scanner

    imported = time.time()
    scanner = Scanner(job["models"], threads=job["threads"])
    loaded = time.time()
    rss_loaded = _rss_now_mb()
    paths = job["paths"]
    first = scanner.scan(_read(paths[0]))
    t_first = time.time()
    info = {
        "pipeline": "ours",
        "description": "Cat Scanner: ONNX Runtime, "
                       f"detector {scanner.detector.model.meta.backbone} + "
                       + (f"breeds {scanner.classifier.model.meta.backbone}" if scanner.classifier
                          else "NO breed model installed"),
        "has_breed_model": scanner.classifier is not None,
        "torch_loaded": "torch" in sys.modules,
        "first_result_ok": first.ok,
    }
    return _measure(job, info, t_spawn, t_import, imported, loaded, rss_loaded, t_first,
                    scan_one=lambda data: scanner.scan(data),
                    scan_batch=lambda datas: list(scanner.scan_many(datas, batch_size=job["batch_size"])),
                    stage_of=lambda r: (r.timing_ms.decode_ms, r.timing_ms.detect_ms, r.timing_ms.classify_ms),
                    is_cat=lambda r: r.is_cat,
                    classified=lambda r: bool(r.breeds))


def _model_info(path: Path) -> dict:
    """Size and the export metadata's kind/backbone/note of one ONNX file (parent side only)."""
    info: dict = {"path": str(path), "bytes": path.stat().st_size}
    from .runtime.onnx_model import OnnxModel

    meta = OnnxModel(path, threads=1).meta
    info.update({"kind": meta.kind, "backbone": meta.backbone})
    return info


class _Reference:
    """The reference pipeline: two ResNet-50s, PyTorch eager, random weights."""

    def __init__(self, threads: int, breeds_mode: str):
        import torch
        from torch import nn

        from .runtime.imagenet import CAT_CLASSES
        from .training.backbones import BACKBONES, BreedNet, ResNet50

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        self.detector = ResNet50().eval()  # ImageNet-shaped: 1000-way fc
        breed_backbone = ResNet50()
        breed_backbone.fc = nn.Identity()  # replaced by the reference head below
        self.breeds = BreedNet(breed_backbone, head="mlp3").eval()  # 2048 -> 512 -> 256 -> 12
        self.spec = BACKBONES["resnet50"].preprocess
        self.cat_classes = torch.tensor(CAT_CLASSES)
        self.breeds_mode = breeds_mode

    def _decode(self, data: bytes):
        from .runtime.imaging import decode_image, preprocess

        t0 = time.perf_counter()
        img = decode_image(data, draft_short_side=self.spec.decode_hint)
        return img, preprocess(img, self.spec), (time.perf_counter() - t0) * 1000

    def _run(self, x, truth_cat: list[bool]) -> list[dict]:
        torch = self.torch
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = self.detector(x)
            p = torch.softmax(logits, dim=1)
            is_cat = torch.isin(p.argmax(dim=1), self.cat_classes).tolist()
            top_p, top_i = p.topk(5, dim=1)
            t1 = time.perf_counter()
            if self.breeds_mode == "always":
                chosen = list(range(len(is_cat)))
            else:  # "cats": a perfect detector (ground truth), since random weights never say cat
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

    def scan(self, data: bytes, truth_cat: bool) -> dict:
        _, arr, decode_ms = self._decode(data)
        r = self._run(self.torch.from_numpy(arr)[None], [truth_cat])[0]
        r["decode_ms"] = decode_ms
        return r

    def scan_many(self, datas, truth: list[bool], batch_size: int) -> list[dict]:
        out, arrs, cats, dec = [], [], [], []
        for data, t in zip(datas, truth):
            _, arr, ms = self._decode(data)
            arrs.append(arr), cats.append(t), dec.append(ms)
            if len(arrs) >= batch_size:
                out += self._flush(arrs, cats, dec)
                arrs, cats, dec = [], [], []
        if arrs:
            out += self._flush(arrs, cats, dec)
        return out

    def _flush(self, arrs, cats, dec) -> list[dict]:
        import numpy as np

        rows = self._run(self.torch.from_numpy(np.stack(arrs)), cats)
        for r, ms in zip(rows, dec):
            r["decode_ms"] = ms
        return rows


def _worker_reference(job: dict, t_spawn: float) -> dict:
    t_import = time.time()
    import torch

    imported = time.time()
    ref = _Reference(job["threads"], job["reference_breeds"])
    loaded = time.time()
    rss_loaded = _rss_now_mb()
    paths, truth = job["paths"], job["truth_cat"]
    ref.scan(_read(paths[0]), truth[0])
    t_first = time.time()
    truth_of = dict(zip(paths, truth))
    info = {
        "pipeline": "reference",
        "description": "Reference: 2x ResNet-50, PyTorch eager (inference_mode), "
                       "RANDOM weights, breed head 2048-512-256-12",
        "weights": "random init (torch.manual_seed(0)); speed does not depend on the weights",
        "breeds_mode": job["reference_breeds"],
        "breeds_mode_note": (
            "breed ResNet-50 runs on EVERY photo (simplest fair upper bound; the real reference "
            "runs it only when its detector says cat)"
            if job["reference_breeds"] == "always" else
            "breed ResNet-50 runs only on photos labelled cat (a perfect detector stands in for "
            "the randomly initialised one)"),
        "onnxruntime_loaded": "onnxruntime" in sys.modules,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    # the reference needs the ground-truth species only in "cats" mode; both calls get it
    return _measure(job, info, t_spawn, t_import, imported, loaded, rss_loaded, t_first,
                    scan_one=lambda data, path=None: ref.scan(data, truth_of[path]),
                    scan_batch=lambda datas: ref.scan_many(datas, truth, job["batch_size"]),
                    stage_of=lambda r: (r["decode_ms"], r["detect_ms"], r["classify_ms"]),
                    is_cat=lambda r: r["is_cat"],
                    classified=lambda r: r["breeds"] is not None,
                    pass_path=True)


def _measure(job, info, t_spawn, t_import, imported, loaded, rss_loaded, t_first, *, scan_one, scan_batch,
             stage_of, is_cat, classified, pass_path: bool = False) -> dict:
    from .progress import progress_bar

    name = info["pipeline"]
    paths = job["paths"]
    warm = paths[: job["warmup"]]
    for p in warm:
        scan_one(_read(p), path=p) if pass_path else scan_one(_read(p))

    latencies, stages, n_cat, n_classified = [], [], 0, 0
    for p in progress_bar(paths, desc=f"{name}: one at a time"):
        data = _read(p)
        t0 = time.perf_counter()
        r = scan_one(data, path=p) if pass_path else scan_one(data)
        latencies.append((time.perf_counter() - t0) * 1000)
        stages.append(stage_of(r))
        n_cat += bool(is_cat(r))
        n_classified += bool(classified(r))

    _log(f"{name}: batch throughput ({len(paths)} photos, batch {job['batch_size']}) ...")
    scan_batch(_read(p) for p in paths[: job["batch_size"]])  # warm-up: batch-shaped buffers
    rounds = []
    for _ in range(job["throughput_rounds"]):
        t0 = time.perf_counter()
        results = scan_batch(_read(p) for p in paths)
        rounds.append(time.perf_counter() - t0)
        assert len(results) == len(paths)
    best = min(rounds)

    cols = list(zip(*stages)) if stages else [[], [], []]
    info.update({
        "photos": len(paths),
        "threads": job["threads"],
        "batch_size": job["batch_size"],
        "warmup_photos": len(warm),
        "latency_ms": summarize_ms(latencies),
        "stage_ms_p50": {k: summarize_ms(list(v)).get("p50") for k, v in zip(("decode", "detect", "classify"), cols)},
        "detected_cat": n_cat,
        "breeds_classified": n_classified,
        "throughput_photos_per_s": round(len(paths) / best, 2),
        "throughput_rounds_s": [round(r, 3) for r in rounds],
        "cold_start_s": round(t_first - t_spawn, 3),
        "cold_start_breakdown_s": {
            "interpreter_start": round(t_import - t_spawn, 3),
            "imports": round(imported - t_import, 3),
            "model_load": round(loaded - imported, 3),
            "first_photo": round(t_first - loaded, 3),
        },
        "rss_after_load_mb": rss_loaded,
        "peak_rss_self_mb": _peak_rss_self_mb(),
    })
    return info


def worker_main(pipeline: str, job_file: str, out_file: str, t_spawn: float) -> None:
    job = json.loads(Path(job_file).read_text())
    fn = _worker_ours if pipeline == "ours" else _worker_reference
    result = fn(job, t_spawn)
    Path(out_file).write_text(json.dumps(result, indent=2))


# =========================================================================== parent


# The worker imports only the submodules its pipeline needs: ``catscanner/__init__`` (which loads
# the Scanner, hence ONNX Runtime) is replaced by a bare package object, so the reference worker's
# memory and cold start contain no ONNX Runtime and the ours worker's no PyTorch.
_WORKER_BOOT = ("import sys, types; pkg = types.ModuleType('catscanner'); pkg.__path__ = [{pkg!r}]; "
                "sys.modules['catscanner'] = pkg; from catscanner.bench import main; main()")


def _spawn_worker(pipeline: str, job_file: Path, out_file: Path) -> tuple[dict, float, int]:
    """Run one worker in a fresh interpreter; returns (its result, peak RSS MB from wait4, exit code)."""
    t_spawn = time.time()
    cmd = [sys.executable, "-c", _WORKER_BOOT.format(pkg=str(Path(__file__).resolve().parent)),
           "--worker", pipeline, "--job", str(job_file), "--out", str(out_file), "--t-spawn", repr(t_spawn)]
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0 or not out_file.exists():
        raise RuntimeError(f"benchmark worker {pipeline!r} failed with exit code {code}: {' '.join(cmd)}")
    return json.loads(out_file.read_text()), round(usage.ru_maxrss / 1024, 1), code


def _warm_os_cache(pipelines: list[str]) -> None:
    """Import the heavy libraries once in a throwaway process, so cold start measures a fresh
    process with a warm OS file cache (not the disk), the same for both pipelines."""
    mods = ["onnxruntime", "numpy", "PIL.Image"] + (["torch"] if "reference" in pipelines else [])
    subprocess.run([sys.executable, "-c", "import " + ", ".join(mods)], check=False)


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a and b else None


def run_bench(*, photos: int | None = None, threads: int = 2, json_out: str | Path = "bench.json",
              quick: bool = False, data: str | Path | None = None, models: str | Path | None = None,
              batch_size: int = 8, reference_breeds: str = "always", pipelines: tuple[str, ...] = PIPELINES,
              throughput_rounds: int | None = None) -> dict:
    """Run the whole comparison; prints a table (ratios last) and writes JSON. Returns the JSON dict."""
    from rich.console import Console

    from .runtime.contract import ModelFiles
    from .training.data import read_split

    console = Console(stderr=False)
    if reference_breeds not in REFERENCE_BREEDS_MODES:
        raise ValueError(f"reference_breeds must be one of {REFERENCE_BREEDS_MODES}")
    n = photos or (QUICK_PHOTOS if quick else DEFAULT_PHOTOS)
    root = resolve_data_root(data)
    items = read_split(root, "test", species=None)
    chosen = select_photos(items, n)
    files = ModelFiles.resolve(models)
    model_dir = files.folder
    has_breeds = files.breeds is not None

    job = {
        "paths": [str(p.path) for p in chosen],
        "truth_cat": [p.species == "cat" for p in chosen],
        "threads": threads,
        "batch_size": batch_size,
        "warmup": 2 if quick else 5,
        "throughput_rounds": throughput_rounds or (1 if quick else 2),
        "models": str(model_dir),
        "reference_breeds": reference_breeds,
    }
    load = os.getloadavg()
    console.print(f"[bold]catscan bench[/bold]: {len(chosen)} test photos "
                  f"({sum(job['truth_cat'])} cats, {len(chosen) - sum(job['truth_cat'])} dogs) from {root}, "
                  f"{threads} threads, batch {batch_size}, load average {load[0]:.2f}"
                  + (" [yellow](quick)[/yellow]" if quick else ""))
    if not has_breeds:
        console.print(f"[yellow]warning:[/yellow] no breed model in {model_dir}: Cat Scanner runs "
                      "without breeds, so the comparison is not like for like.")
    if load[0] > (os.cpu_count() or 1) * 0.5:
        console.print(f"[yellow]warning:[/yellow] load average {load[0]:.2f} on {os.cpu_count()} cores: "
                      "other work is running, numbers will be noisy and slow.")

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="catscan-bench-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        _warm_os_cache(list(pipelines))
        for name in pipelines:
            console.print(f"[bold]{name}[/bold]: fresh process ...")
            res, peak_mb, _ = _spawn_worker(name, job_file, Path(tmp) / f"{name}.json")
            res["peak_rss_mb"] = peak_mb
            results[name] = res

    ours, ref = results.get("ours"), results.get("reference")
    ratios = {}
    if ours and ref:
        ratios = {
            "latency_p50_reference_over_ours": _ratio(ref["latency_ms"]["p50"], ours["latency_ms"]["p50"]),
            "latency_p95_reference_over_ours": _ratio(ref["latency_ms"]["p95"], ours["latency_ms"]["p95"]),
            "throughput_reference_over_ours": _ratio(ref["throughput_photos_per_s"], ours["throughput_photos_per_s"]),
            "throughput_ours_over_reference": _ratio(ours["throughput_photos_per_s"], ref["throughput_photos_per_s"]),
            "peak_rss_reference_over_ours": _ratio(ref["peak_rss_mb"], ours["peak_rss_mb"]),
            "cold_start_reference_over_ours": _ratio(ref["cold_start_s"], ours["cold_start_s"]),
        }
    report = {
        "benchmark": "catscan bench",
        "quick": quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data_root": str(root),
        "split": "test",
        "photos": len(chosen),
        "photo_names": [p.name for p in chosen],
        "threads": threads,
        "batch_size": batch_size,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "method": {
            "latency": "Scanner.scan(bytes) / reference scan(bytes), one photo at a time, after "
                       f"{job['warmup']} warm-up photos; bytes read before the timer",
            "throughput": f"Scanner.scan_many / reference batches of {batch_size}, bytes read lazily "
                          f"inside the timer; one untimed warm-up batch, best of {job['throughput_rounds']} round(s)",
            "peak_rss": "ru_maxrss of the worker process from os.wait4 (whole process lifetime)",
            "cold_start": "parent spawns the worker -> first result (imports + model load + first photo); "
                          "OS file cache warmed by a throwaway import first",
            "decoding": "both: catscanner.imaging.decode_image with JPEG draft to the model's short side, "
                        "then preprocess (ours: EfficientNet-Lite spec; reference: ResNet-50 spec)",
            "reference_weights": "random init (speed does not depend on the weights)",
            "reference_breeds": ref["breeds_mode_note"] if ref else None,
        },
        "models": {p.name: _model_info(p) for p in (files.detector, files.breeds) if p is not None},
        "pipelines": results,
        "ratios": ratios,
    }
    Path(json_out).write_text(json.dumps(report, indent=2))
    _print_report(console, report)
    console.print(f"JSON written to {json_out}")
    if ratios:
        console.print(
            f"[bold]Reference / Cat Scanner: latency p50 {ratios['latency_p50_reference_over_ours']}x "
            f"(higher = Cat Scanner faster); throughput {ratios['throughput_reference_over_ours']}x "
            f"(= Cat Scanner {ratios['throughput_ours_over_reference']}x the photos/s)[/bold]")
    return report


def _print_report(console, report: dict) -> None:
    from rich.table import Table

    res = report["pipelines"]
    names = [n for n in PIPELINES if n in res]
    table = Table(title=f"catscan bench — {report['photos']} test photos, {report['threads']} threads"
                        + (" (quick)" if report["quick"] else ""))
    table.add_column("metric")
    for n in names:
        table.add_column("Cat Scanner" if n == "ours" else "reference (2x ResNet-50, random init)", justify="right")
    if len(names) == 2:
        table.add_column("reference / ours", justify="right")

    def row(label, get, fmt, ratio=True):
        vals = [get(res[n]) for n in names]
        cells = [fmt.format(v) if v is not None else "—" for v in vals]
        if len(names) == 2:
            cells.append(f"{_ratio(vals[1], vals[0])}x" if ratio and vals[0] and vals[1] else "")
        table.add_row(label, *cells)

    row("latency p50 (ms)", lambda r: r["latency_ms"]["p50"], "{:.1f}")
    row("latency p95 (ms)", lambda r: r["latency_ms"]["p95"], "{:.1f}")
    row("  decode p50 (ms)", lambda r: r["stage_ms_p50"]["decode"], "{:.1f}", False)
    row("  detect p50 (ms)", lambda r: r["stage_ms_p50"]["detect"], "{:.1f}", False)
    row("  classify p50 (ms)", lambda r: r["stage_ms_p50"]["classify"], "{:.1f}", False)
    row("throughput (photos/s)", lambda r: r["throughput_photos_per_s"], "{:.1f}")
    row("peak RSS (MB)", lambda r: r["peak_rss_mb"], "{:.0f}")
    row("cold start (s)", lambda r: r["cold_start_s"], "{:.2f}")
    row("  imports (s)", lambda r: r["cold_start_breakdown_s"]["imports"], "{:.2f}", False)
    row("  model load (s)", lambda r: r["cold_start_breakdown_s"]["model_load"], "{:.2f}", False)
    row("photos said cat", lambda r: r["detected_cat"], "{}", False)
    row("photos breed-classified", lambda r: r["breeds_classified"], "{}", False)
    console.print(table)
    m = report["method"]
    console.print(f"[dim]reference weights: {m['reference_weights']}; reference breeds: {m['reference_breeds']}.[/dim]")
    console.print(f"[dim]load average start/end: {report['machine']['load_average_at_start'][0]} / "
                  f"{report['machine']['load_average_at_end'][0]} on {report['machine']['cpu_count']} cores.[/dim]")


# =========================================================================== entry point


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m catscanner.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", default="bench.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", default=None)
    ap.add_argument("--models", default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reference-breeds", choices=REFERENCE_BREEDS_MODES, default="always")
    ap.add_argument("--only", choices=PIPELINES, default=None, help="run one pipeline only")
    ap.add_argument("--worker", choices=PIPELINES, help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--t-spawn", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker_main(a.worker, a.job, a.out, a.t_spawn or time.time())
        return
    run_bench(photos=a.photos, threads=a.threads, json_out=a.json_out, quick=a.quick, data=a.data,
              models=a.models, batch_size=a.batch_size, reference_breeds=a.reference_breeds,
              pipelines=(a.only,) if a.only else PIPELINES)


if __name__ == "__main__":
    main()
