"""The ``catscan bench`` harness: Cat Scanner and the reference pipeline, interleaved, on the same photos.

Each pipeline runs in its own fresh worker process (``--worker ours|reference``), started so that
it imports only what its pipeline needs (no PyTorch in ours, no ONNX Runtime/OpenVINO in the
reference); peak RSS (``ru_maxrss`` from ``os.wait4``) and cold start (spawn to first result)
are per process. Both workers stay alive for the whole run and take commands from the parent over
a pipe, one at a time, so the two pipelines never run at the same moment and their measurements
alternate in small chunks (A B, then B A, ...): a change in the machine's load hits both alike and
every ratio comes from the same minutes.

What the harness does NOT do while a worker is timing (each measured in benchmarks/FINDINGS.md,
"Bench harness and shapes (issue 9)"): no live progress display (the parent prints one line
between chunks, while both workers wait), no file reading inside a timer (each chunk's bytes are
read first), no garbage from the previous chunk (``gc.collect()`` before each chunk), no first
sight of an input shape (an untimed warm-up first: Cat Scanner scans every photo once, since the
whole-frame detector's input shape follows each photo's aspect ratio and a runtime's first run at
a new shape is slower; the reference, whose input is always 224x224, one photo of each set).

Per pipeline and photo set: one-photo latency (p50/p95/mean; wall clock and process CPU time),
the time in each stage, and on the Oxford set the throughput of ``scan_many`` (batch 8).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

DEFAULT_PHOTOS = 200
QUICK_PHOTOS = 8
DEFAULT_SHAPE_PHOTOS = 20
QUICK_SHAPE_PHOTOS = 2
DEFAULT_ROUNDS = 8
QUICK_ROUNDS = 2
PIPELINES = ("ours", "reference")
REFERENCE_BREEDS_MODES = ("always", "cats")


# =========================================================================== shared helpers


def resolve_data_root(data: str | Path | None = None) -> Path:
    """The Oxford-IIIT Pet folder: ``data``, else from ``$CATSCAN_DATA``, else the shared data."""
    from ..training.data import oxford_root

    return oxford_root(data)


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

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kilobytes


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a and b else None


def _cpu_ticks() -> dict[int, tuple[int, str]]:
    """pid -> (utime + stime in clock ticks, command line) for every process we may read."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            ticks = int(fields[11]) + int(fields[12])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            out[int(d.name)] = (ticks, cmd or stat[stat.index("(") + 1:stat.rindex(")")])
        except (OSError, ValueError, IndexError):
            continue
    return out


def busy_processes(interval: float = 1.0, top: int = 6) -> list[dict]:
    """The processes that used the most CPU over ``interval`` seconds (this one excluded), as
    percent of one core, command lines cut to 120 characters: what else runs on the machine."""
    a = _cpu_ticks()
    time.sleep(interval)
    return _busy_between(a, _cpu_ticks(), interval, {os.getpid()}, top)


def _busy_between(a: dict, b: dict, seconds: float, exclude: set[int], top: int = 6) -> list[dict]:
    """Processes (alive at both snapshots, not in ``exclude``) that used >= 5 % of a core between them."""
    hz = os.sysconf("SC_CLK_TCK")
    rows = []
    for pid, (ticks, cmd) in b.items():
        if pid in exclude or pid not in a or seconds <= 0:
            continue
        pct = (ticks - a[pid][0]) / hz / seconds * 100
        if pct >= 5:
            rows.append({"pid": pid, "cpu_percent": round(pct), "command": cmd[:120]})
    return sorted(rows, key=lambda r: -r["cpu_percent"])[:top]


# =========================================================================== workers


class _OursPipeline:
    name = "ours"

    def __init__(self, job: dict):
        from ..runtime.preprocessing import Preprocess
        from ..runtime.scanner import Scanner

        self.scanner = Scanner(job["models"], threads=job["threads"], runtime=job["runtime"],
                               precision=job["precision"])
        self.batch_size = job["batch_size"]
        self.centre_crop = Preprocess.efficientnet_lite(224)  # version 0.1's detector input

    def scan(self, data: bytes, truth_cat: bool) -> tuple:
        r = self.scanner.scan(data)
        t = r.timing_ms
        n_breeds = len(r.cats) if self.scanner.classifier is not None else 0
        return t.decode_ms, t.detect_ms, t.classify_ms, bool(r.is_cat), n_breeds

    def centre_crop_detect(self, data: bytes) -> float:
        """The detect stage of version 0.1 (the Lite0 graph on the photo's 224 x 224 centre crop,
        preprocessing included) on the same photo, in ms: what issue 8's speed bound compares
        the whole-frame detect stage with. Timed apart from the scan, on the image the scan decoded
        (a 12 MP JPEG draft-decoded to a 1,024-px short side: version 0.1 decoded to 256 px, so its
        crop resize here costs more than it did)."""
        from ..runtime.preprocessing import preprocess

        img = self.scanner.load(data)
        t0 = time.perf_counter()
        self.scanner.detector.model.run(preprocess(img, self.centre_crop)[None])
        return round((time.perf_counter() - t0) * 1000, 3)

    def scan_many(self, datas: list[bytes], truth: list[bool]) -> int:
        return sum(1 for _ in self.scanner.scan_many(datas, batch_size=self.batch_size))

    def describe(self) -> dict:
        s = self.scanner
        models = {}
        for role, m in (("detector", s.detector.model), ("breeds", s.classifier.model if s.classifier else None)):
            if m is None:
                continue
            d = m.describe()
            d.update({"path": str(m.path), "backbone": m.meta.backbone, "kind": m.meta.kind,
                      "fallback_reason": m.fallback_reason})
            models[role] = d
        pairs = {(d["runtime"], d["version"], d["precision"]) for d in models.values()}
        runtime = " + ".join(sorted({f"{r} {v}" for r, v, _ in pairs}))
        precision = " + ".join(sorted({p for _, _, p in pairs}))
        return {
            "description": f"Cat Scanner: {runtime} {precision}, whole-frame detector "
                           f"{models['detector']['backbone']} + "
                           + (f"breeds {models['breeds']['backbone']} on each cat's crop" if "breeds" in models
                              else "NO breed model installed"),
            "runtime": runtime,
            "precision": precision,
            "threads": s.detector.model.threads,
            "models": models,
            "has_breed_model": s.classifier is not None,
            "torch_loaded": "torch" in sys.modules,
            "decode": "Scanner.load: decode_image, JPEG draft to short side 1024, whole frame",
        }


class _ReferencePipeline:
    name = "reference"

    def __init__(self, job: dict):
        from .reference import Reference

        self.ref = Reference(job["threads"], job["reference_breeds"])
        self.batch_size = job["batch_size"]

    def scan(self, data: bytes, truth_cat: bool) -> tuple:
        r = self.ref.scan(data, truth_cat)
        return r["decode_ms"], r["detect_ms"], r["classify_ms"], bool(r["is_cat"]), int(r["breeds"] is not None)

    def scan_many(self, datas: list[bytes], truth: list[bool]) -> int:
        return len(self.ref.scan_many(datas, truth, self.batch_size))

    def describe(self) -> dict:
        d = self.ref.describe()
        d.update({"runtime": f"pytorch {d['torch']} eager", "precision": "f32", "threads": self.ref.threads,
                  "onnxruntime_loaded": "onnxruntime" in sys.modules, "openvino_loaded": "openvino" in sys.modules})
        return d


def _timed_chunk(pipe, photos: list) -> dict:
    """One photo at a time: wall clock and process CPU time (all threads) around each scan."""
    datas = [_read(path) for path, _ in photos]  # read before any timer
    gc.collect()
    t_start = time.time()
    rows = []
    for data, (_, truth) in zip(datas, photos):
        c0 = time.process_time()
        t0 = time.perf_counter()
        stages = pipe.scan(data, truth)
        wall = (time.perf_counter() - t0) * 1000
        cpu = (time.process_time() - c0) * 1000
        baseline = [pipe.centre_crop_detect(data)] if hasattr(pipe, "centre_crop_detect") else []
        rows.append([round(wall, 3), round(cpu, 3), *stages, *baseline])
    return {"rows": rows, "t0": t_start, "t1": time.time()}


def _throughput(pipe, photos: list) -> dict:
    datas = [_read(path) for path, _ in photos]
    truth = [t for _, t in photos]
    gc.collect()
    t_start = time.time()
    c0 = time.process_time()
    t0 = time.perf_counter()
    n = pipe.scan_many(datas, truth)
    seconds = time.perf_counter() - t0
    return {"photos": n, "seconds": round(seconds, 4), "cpu_s": round(time.process_time() - c0, 4),
            "t0": t_start, "t1": time.time()}


def worker_main(pipeline: str, job_file: str, t_spawn: float) -> None:
    """A worker: load the pipeline, scan the first photo, say "ready", then obey the parent's
    commands (one JSON object a line on stdin; one answer a line on the original stdout)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed (libraries' messages) goes to stderr, not into the protocol
    sys.stdout = sys.stderr

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    job = json.loads(Path(job_file).read_text())
    t_import = time.time()
    if pipeline == "ours":
        from ..runtime import scanner  # noqa: F401  (the imports, timed apart from the model load)
        imported = time.time()
        pipe = _OursPipeline(job)
    else:
        import torch  # noqa: F401
        imported = time.time()
        pipe = _ReferencePipeline(job)
    loaded = time.time()
    rss_loaded = _rss_now_mb()
    pipe.scan(_read(job["first_photo"]), True)
    t_first = time.time()
    send({"event": "ready", "run_id": job["run_id"], "pid": os.getpid(),
          "cold_start_s": round(t_first - t_spawn, 3),
          "cold_start_breakdown_s": {"interpreter_start": round(t_import - t_spawn, 3),
                                     "imports": round(imported - t_import, 3),
                                     "model_load": round(loaded - imported, 3),
                                     "first_photo": round(t_first - loaded, 3)},
          "rss_after_load_mb": rss_loaded, "info": pipe.describe()})
    for line in sys.stdin:
        cmd = json.loads(line)
        what = cmd["cmd"]
        if what == "exit":
            break
        if what == "warmup":
            t0 = time.perf_counter()
            for path, truth in cmd["photos"]:
                pipe.scan(_read(path), truth)
            batch = cmd["photos"][: job["batch_size"]]
            pipe.scan_many([_read(p) for p, _ in batch], [t for _, t in batch])
            send({"seconds": round(time.perf_counter() - t0, 3)})
        elif what == "latency":
            send(_timed_chunk(pipe, cmd["photos"]))
        elif what == "throughput":
            send(_throughput(pipe, cmd["photos"]))
        elif what == "info":
            send({"rss_now_mb": _rss_now_mb(), "peak_rss_self_mb": _peak_rss_self_mb(), "info": pipe.describe()})
        else:
            send({"error": f"unknown command {what!r}"})


# =========================================================================== parent


# The worker imports only the submodules its pipeline needs: ``catscanner/__init__`` (which loads
# the Scanner, hence ONNX Runtime) is replaced by a bare package object, so the reference worker's
# memory and cold start contain no ONNX Runtime and the ours worker's no PyTorch.
_WORKER_BOOT = ("import sys, types; pkg = types.ModuleType('catscanner'); pkg.__path__ = [{pkg!r}]; "
                "sys.modules['catscanner'] = pkg; from catscanner.bench.harness import main; main()")


class _Worker:
    """One worker process and its command pipe."""

    def __init__(self, pipeline: str, job_file: Path):
        self.name = pipeline
        self.t_spawn = time.time()
        pkg = str(Path(__file__).resolve().parents[1])
        cmd = [sys.executable, "-c", _WORKER_BOOT.format(pkg=pkg),
               "--worker", pipeline, "--job", str(job_file), "--t-spawn", repr(self.t_spawn)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.peak_rss_mb: float | None = None

    def _recv(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"benchmark worker {self.name!r} stopped with exit code {code} "
                               "(its messages are above)")
        return json.loads(line)

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        answer = self._recv()
        if "error" in answer:
            raise RuntimeError(f"benchmark worker {self.name!r}: {answer['error']}")
        return answer

    def close(self) -> None:
        """Tell the worker to exit and take its peak RSS (whole lifetime) from ``os.wait4``."""
        try:
            self.proc.stdin.write('{"cmd": "exit"}\n')
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.peak_rss_mb = round(usage.ru_maxrss / 1024, 1)
        if self.proc.returncode != 0:
            raise RuntimeError(f"benchmark worker {self.name!r} exited with code {self.proc.returncode}")

    def cpu_ms(self) -> float | None:
        """CPU time (all threads) this worker has used so far, from /proc; None where unreadable."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _warm_os_cache(pipelines: list[str]) -> None:
    """Import the heavy libraries once in a throwaway process, so cold start measures a fresh
    process with a warm OS file cache (not the disk), the same for both pipelines."""
    mods = ["numpy", "PIL.Image"] + (["onnxruntime"] if "ours" in pipelines else []) \
        + (["torch"] if "reference" in pipelines else [])
    subprocess.run([sys.executable, "-c", "import " + ", ".join(mods)], check=False)


def _file_info(path: str) -> dict:
    p = Path(path)
    h = hashlib.sha256(p.read_bytes()).hexdigest()
    return {"bytes": p.stat().st_size, "sha256_12": h[:12]}


def run_bench(*, photos: int | None = None, shape_photos: int | None = None, rounds: int | None = None,
              threads: int = 2, json_out: str | Path = "bench.json", quick: bool = False,
              data: str | Path | None = None, models: str | Path | None = None, batch_size: int = 8,
              reference_breeds: str = "always", runtime: str = "auto", precision: str = "auto",
              pipelines: tuple[str, ...] = PIPELINES, shapes: tuple[str, ...] | None = None) -> dict:
    """Run the whole comparison; prints a table and writes JSON. Returns the JSON dict."""
    from rich.console import Console

    from ..runtime.contract import ModelFiles
    from ..training.data import data_root
    from .photos import SHAPE_NAMES, describe_set, make_shape_sets, oxford_set, to_json

    console = Console(stderr=False)
    if reference_breeds not in REFERENCE_BREEDS_MODES:
        raise ValueError(f"reference_breeds must be one of {REFERENCE_BREEDS_MODES}")
    shapes = tuple(shapes or SHAPE_NAMES)
    unknown = set(shapes) - set(SHAPE_NAMES)
    if unknown:
        raise ValueError(f"unknown photo set(s) {sorted(unknown)}: use {', '.join(SHAPE_NAMES)}")
    if "ours" in pipelines:  # a runtime or precision that cannot be had fails here, with the reason
        from ..runtime.engine import choose_precision, choose_runtime

        choose_precision(choose_runtime(runtime), precision)
    n = photos or (QUICK_PHOTOS if quick else DEFAULT_PHOTOS)
    n_shape = shape_photos or (QUICK_SHAPE_PHOTOS if quick else DEFAULT_SHAPE_PHOTOS)
    n_rounds = rounds or (QUICK_ROUNDS if quick else DEFAULT_ROUNDS)
    root = resolve_data_root(data)
    shared = data_root(data if data is not None else root.parent)
    files = ModelFiles.resolve(models)
    run_id = uuid.uuid4().hex[:12]
    load_start = os.getloadavg()
    busy_start = busy_processes()

    console.print(f"[bold]catscan bench[/bold] {run_id}: {', '.join(pipelines)}; {threads} threads, batch "
                  f"{batch_size}, {n_rounds} interleaved rounds; runtime {runtime}, precision {precision}; "
                  f"load average {load_start[0]:.2f} on {os.cpu_count()} cores"
                  + (" [yellow](quick)[/yellow]" if quick else ""))
    if busy_start:
        console.print("[yellow]other processes using the CPU:[/yellow] " + "; ".join(
            f"{b['cpu_percent']}% {b['command'][:60]}" for b in busy_start))
    busy = load_start[0] > 0.5 * (os.cpu_count() or 1) or sum(b["cpu_percent"] for b in busy_start) >= 50
    if busy:
        console.print("[yellow]warning: the machine is busy: absolute times will be slow and noisy (PyTorch's "
                      "threads suffer most when the cores are taken). The two pipelines are measured "
                      "interleaved, so ratios share the load, but compare them with a run on an idle machine.[/yellow]")
    if files.breeds is None:
        console.print(f"[yellow]warning:[/yellow] no breed model in {files.folder}: Cat Scanner runs "
                      "without breeds, so the comparison is not like for like.")

    workers: list[_Worker] = []
    results: dict[str, dict] = {}
    round_log: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="catscan-bench-") as tmp:
        t_gen = time.perf_counter()
        sets = {"oxford": oxford_set(root, n)} if "oxford" in shapes else {}
        sets.update(make_shape_sets(shared, Path(tmp) / "photos", n_shape, shapes=shapes))
        sets = {k: sets[k] for k in SHAPE_NAMES if k in sets}
        console.print(f"photo sets ({time.perf_counter() - t_gen:.1f} s to make, in {tmp}): "
                      + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
        first = next(iter(sets.values()))[0].path
        job = {"run_id": run_id, "threads": threads, "batch_size": batch_size, "models": str(files.folder),
               "reference_breeds": reference_breeds, "runtime": runtime, "precision": precision,
               "first_photo": first}
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        _warm_os_cache(list(pipelines))
        as_cmd = {k: [[p.path, p.is_cat] for p in v] for k, v in sets.items()}
        try:
            for name in pipelines:  # one at a time: each cold start has the machine to itself
                w = _Worker(name, job_file)
                workers.append(w)
                ready = w._recv()
                results[name] = {"run_id": ready["run_id"], "pid": ready["pid"],
                                 "cold_start_s": ready["cold_start_s"],
                                 "cold_start_breakdown_s": ready["cold_start_breakdown_s"],
                                 "rss_after_load_mb": ready["rss_after_load_mb"], **ready["info"],
                                 "latency": {}, "throughput": {}, "calls": []}
                console.print(f"{name}: ready in {ready['cold_start_s']:.2f} s ({ready['info']['runtime']}, "
                              f"{ready['info']['precision']})")
            for w in workers:
                # Cat Scanner's detector input follows each photo's shape: it sees every photo once.
                # The reference's input is always 224x224: one photo of each set is enough.
                warm = [p for v in as_cmd.values() for p in (v if w.name == "ours" else v[:1])]
                t = w.call(cmd="warmup", photos=warm)
                console.print(f"{w.name}: untimed warm-up, {len(warm)} photos + one batch, {t['seconds']:.1f} s")
            round_log = _rounds(console, workers, results, as_cmd, n_rounds, batch_size)
            for w in workers:
                info = w.call(cmd="info")
                results[w.name]["rss_end_mb"] = info["rss_now_mb"]
            for w in workers:
                w.close()
                results[w.name]["peak_rss_mb"] = w.peak_rss_mb
        finally:
            for w in workers:
                w.kill()
        set_info = {k: describe_set(k, v) for k, v in sets.items()}
        set_files = {k: to_json(v) for k, v in sets.items() if k == "oxford"}

    _summarize(results, batch_size)
    if "ours" in results:
        for d in results["ours"]["models"].values():
            d.update(_file_info(d["path"]))
    report = {
        "benchmark": "catscan bench",
        "run_id": run_id,
        "quick": quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "data_root": str(root),
        "settings": {"threads": threads, "batch_size": batch_size, "rounds": n_rounds, "runtime": runtime,
                     "precision": precision, "reference_breeds": reference_breeds,
                     "oxford_photos": len(sets.get("oxford", [])), "shape_photos": n_shape},
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu": _cpu_model(),
            "busy": busy,
            "load_average_at_start": [round(x, 2) for x in load_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "busy_processes_at_start": busy_start,
            "busy_processes_at_end": busy_processes(),
            "rounds": round_log,  # per round: load at its end, other processes using CPU during it
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "runtime": results.get("ours", {}).get("runtime"),
        "precision": results.get("ours", {}).get("precision"),
        "photo_sets": set_info,
        "oxford_photo_names": [Path(p["path"]).stem for p in set_files.get("oxford", [])],
        "method": {
            "interleaving": f"both workers alive; the parent sends one command at a time. Latency: each set "
                            f"split into {n_rounds} chunks (photo i in chunk i mod {n_rounds}); chunk r of a set "
                            "runs on both pipelines back to back, order alternating (AB, BA, ...). "
                            f"Throughput: {n_rounds} rounds of the whole Oxford set, order alternating.",
            "latency": "Scanner.scan(bytes) / reference scan(bytes), one photo at a time; wall clock "
                       "(perf_counter) and process CPU time (process_time: all threads) around the call; "
                       "bytes read before the chunk starts; gc.collect() before each chunk",
            "throughput": f"Scanner.scan_many / reference batches of {batch_size}; round r takes Oxford photos "
                          f"r, r+{n_rounds}, ... cut to whole batches; bytes in memory; photos/s of the median "
                          "round (best round also reported)",
            "warm_up": "untimed, before any timing: Cat Scanner scans every photo of every set once (its "
                       "whole-frame detector's input shape follows the photo's shape, and a runtime's first run "
                       "at a new shape is slower); the reference (input always 224x224) one photo of each set; "
                       "then each one batch",
            "display": "no live progress display while a worker is timing; the parent prints between chunks",
            "idle_worker": "the waiting worker's CPU time while the other is timed is recorded per call "
                           "(calls[].idle_worker_cpu_ms, idle_worker_cpu_ms_while_timing): ~0 = it takes nothing",
            "peak_rss": "ru_maxrss of the worker process from os.wait4 (whole lifetime, all photo sets)",
            "cold_start": "parent spawns the worker -> first result (imports + model load + first photo); "
                          "OS file cache warmed by a throwaway import first; workers started one after the other",
            "reference": results.get("reference", {}).get("breeds_mode_note"),
        },
        "pipelines": results,
        **_ratios(results, list(sets)),
    }
    Path(json_out).write_text(json.dumps(report, indent=2))
    _print_report(console, report)
    console.print(f"JSON written to {json_out}")
    return report


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def throughput_chunk(photos: list, r: int, n_rounds: int, batch_size: int) -> list:
    """Round ``r``'s photos for the throughput test: every ``n_rounds``-th Oxford photo from the
    ``r``-th, cut to whole batches; with too few photos for that, the first batch of the set."""
    chunk = photos[r::n_rounds]
    whole = len(chunk) // batch_size * batch_size
    return chunk[:whole] if whole else photos[:batch_size]


def _call_watching(w: _Worker, workers: list[_Worker], **cmd) -> tuple[dict, float | None]:
    """``w.call(**cmd)``, and the CPU time the other (waiting) workers used meanwhile: it should
    be ~0, i.e. the idle pipeline takes nothing from the one being timed."""
    others = [o for o in workers if o is not w]
    before = [o.cpu_ms() for o in others]
    res = w.call(**cmd)
    after = [o.cpu_ms() for o in others]
    if not others or None in before or None in after:
        return res, None
    return res, round(sum(a - b for a, b in zip(after, before)), 1)


def _rounds(console, workers: list[_Worker], results: dict, sets: dict[str, list], n_rounds: int,
            batch_size: int) -> list[dict]:
    """The measurements, interleaved: per round, each set's chunk on both pipelines (order
    alternating), then one throughput chunk of the Oxford set on both (order alternating).
    Returns per round: its length, the load at its end, and the other processes that used CPU meanwhile."""
    log = []
    mine = {os.getpid(), *(w.proc.pid for w in workers)}
    for r in range(n_rounds):
        line = []
        snap, t_round = _cpu_ticks(), time.time()
        for si, (name, photos) in enumerate(sets.items()):
            chunk = photos[r::n_rounds]
            if not chunk:
                continue
            order = workers if (r + si) % 2 == 0 else workers[::-1]
            p50 = {}
            for w in order:
                load = os.getloadavg()[0]
                res, idle_cpu = _call_watching(w, workers, cmd="latency", photos=chunk)
                lat = results[w.name]["latency"].setdefault(name, {"rows": [], "per_round_p50": []})
                lat["rows"] += res["rows"]
                p50[w.name] = statistics.median(row[0] for row in res["rows"])
                lat["per_round_p50"].append(round(p50[w.name], 2))
                results[w.name]["calls"].append({"phase": "latency", "set": name, "round": r, "photos": len(chunk),
                                                 "t0": res["t0"], "t1": res["t1"], "load": round(load, 2),
                                                 "idle_worker_cpu_ms": idle_cpu})
            line.append(f"{name} " + "/".join(f"{p50[w.name]:.0f}" for w in workers))
        if "oxford" in sets:
            order = workers if r % 2 == 0 else workers[::-1]
            pps = {}
            batch = throughput_chunk(sets["oxford"], r, n_rounds, batch_size)
            for w in order:
                load = os.getloadavg()[0]
                res, idle_cpu = _call_watching(w, workers, cmd="throughput", photos=batch)
                tp = results[w.name]["throughput"].setdefault("rounds", [])
                tp.append(res)
                pps[w.name] = res["photos"] / res["seconds"]
                results[w.name]["calls"].append({"phase": "throughput", "set": "oxford", "round": r,
                                                 "photos": res["photos"], "t0": res["t0"], "t1": res["t1"],
                                                 "load": round(load, 2), "idle_worker_cpu_ms": idle_cpu})
            line.append("photos/s " + "/".join(f"{pps[w.name]:.1f}" for w in workers))
        others = _busy_between(snap, _cpu_ticks(), time.time() - t_round, mine)
        log.append({"round": r, "seconds": round(time.time() - t_round, 1), "load_end": round(os.getloadavg()[0], 2),
                    "other_processes": others})
        console.print(f"round {r + 1}/{n_rounds} (p50 ms {'/'.join(w.name for w in workers)}; "
                      f"load {os.getloadavg()[0]:.1f}): " + ", ".join(line))
        if others:
            console.print("  [yellow]meanwhile:[/yellow] " + "; ".join(
                f"{o['cpu_percent']}% {o['command'][:50]}" for o in others[:3]))
    return log


def _summarize(results: dict, batch_size: int) -> None:
    """Rows -> summaries, in place."""
    for res in results.values():
        for name, lat in res["latency"].items():
            rows = lat.pop("rows")
            cols = list(zip(*rows))
            lat.update({
                "ms": summarize_ms(list(cols[0])),
                "cpu_ms": summarize_ms(list(cols[1])),
                "stage_ms_p50": {k: summarize_ms(list(v)).get("p50") for k, v in
                                 zip(("decode", "detect", "classify"), cols[2:5])},
                "said_cat": int(sum(cols[5])),
                "breed_runs": int(sum(cols[6])),
            })
            if len(cols) > 7:  # issue 8's bound: whole-frame detect stage <= 2x version 0.1's centre-crop one
                centre = summarize_ms(list(cols[7])).get("p50")
                lat["centre_crop_detect_ms_p50"] = centre
                lat["detect_vs_centre_crop_p50"] = _ratio(lat["stage_ms_p50"]["detect"], centre)
        idle = [c["idle_worker_cpu_ms"] for c in res["calls"] if c.get("idle_worker_cpu_ms") is not None]
        if idle:
            res["idle_worker_cpu_ms_while_timing"] = {"total": round(sum(idle), 1), "max_per_call": max(idle),
                                                      "timed_s": round(sum(c["t1"] - c["t0"] for c in res["calls"]), 2)}
        rounds = res["throughput"].get("rounds")
        if rounds:
            pps = [r["photos"] / r["seconds"] for r in rounds]
            n = sum(r["photos"] for r in rounds)
            res["throughput"].update({
                "photos": n,
                "batch_size": batch_size,
                "rounds_photos": [r["photos"] for r in rounds],
                "rounds_s": [r["seconds"] for r in rounds],
                "photos_per_s": round(statistics.median(pps), 2),
                "photos_per_s_best": round(max(pps), 2),
                "photos_per_s_per_round": [round(x, 2) for x in pps],
                "cpu_ms_per_photo": round(sum(r["cpu_s"] for r in rounds) / n * 1000, 2),
            })
            del res["throughput"]["rounds"]


def _ratios(results: dict, set_names: list[str]) -> dict:
    """How many times faster (or smaller) Cat Scanner is, every number from this run. Also how
    the throughput speed-up follows from the latency speed-up and each pipeline's batch gain."""
    ours, ref = results.get("ours"), results.get("reference")
    if not (ours and ref):
        return {"speedup": {}, "consistency": {}}

    def per_set(key, stat):
        return {s: _ratio(ref["latency"][s][key][stat], ours["latency"][s][key][stat])
                for s in set_names if s in ours["latency"] and s in ref["latency"]}

    speedup = {
        "meaning": "reference / Cat Scanner for times and sizes, Cat Scanner / reference for photos/s: "
                   "higher = Cat Scanner better; all from this run",
        "latency_p50": per_set("ms", "p50"),
        "latency_p95": per_set("ms", "p95"),
        "latency_mean": per_set("ms", "mean"),
        "cpu_ms_p50": per_set("cpu_ms", "p50"),
        "latency_p50_per_round": {s: [_ratio(b, a) for a, b in zip(ours["latency"][s]["per_round_p50"],
                                                                   ref["latency"][s]["per_round_p50"])]
                                  for s in set_names if s in ours["latency"] and s in ref["latency"]},
        "peak_rss": _ratio(ref.get("peak_rss_mb"), ours.get("peak_rss_mb")),
        # Robust to a load that changes during the run (other work on a shared machine slows the
        # reference's PyTorch threads far more than ONNX Runtime's): the median of the per-round
        # ratios, and each pipeline's fastest round (interference only ever adds time).
        "latency_p50_median_of_rounds": {},
        "latency_p50_best_rounds": {},
        "cold_start": _ratio(ref["cold_start_s"], ours["cold_start_s"]),
    }
    for s_ in speedup["latency_p50_per_round"]:
        speedup["latency_p50_median_of_rounds"][s_] = _median(speedup["latency_p50_per_round"][s_])
        speedup["latency_p50_best_rounds"][s_] = _ratio(min(ref["latency"][s_]["per_round_p50"]),
                                                        min(ours["latency"][s_]["per_round_p50"]))
    consistency = {}
    if ours["throughput"] and ref["throughput"]:
        to, tr = ours["throughput"], ref["throughput"]
        speedup["throughput"] = _ratio(to["photos_per_s"], tr["photos_per_s"])
        speedup["throughput_per_round"] = [_ratio(a, b) for a, b in zip(to["photos_per_s_per_round"],
                                                                         tr["photos_per_s_per_round"])]
        speedup["throughput_cpu_ms_per_photo"] = _ratio(tr["cpu_ms_per_photo"], to["cpu_ms_per_photo"])
        speedup["throughput_median_of_rounds"] = _median(speedup["throughput_per_round"])
        speedup["throughput_best_rounds"] = _ratio(max(to["photos_per_s_per_round"]), max(tr["photos_per_s_per_round"]))
        if "oxford" in ours["latency"] and "oxford" in ref["latency"]:
            mo, mr = ours["latency"]["oxford"]["ms"]["mean"], ref["latency"]["oxford"]["ms"]["mean"]
            gain_o = round(to["photos_per_s"] * mo / 1000, 3)
            gain_r = round(tr["photos_per_s"] * mr / 1000, 3)
            consistency = {
                "identity": "throughput speed-up = mean-latency speed-up x (batch gain ours / batch gain reference), "
                            "batch gain = photos/s in batches x mean one-photo latency (1 = batching gains nothing)",
                "latency_mean_speedup": _ratio(mr, mo),
                "latency_p50_speedup": _ratio(ref["latency"]["oxford"]["ms"]["p50"], ours["latency"]["oxford"]["ms"]["p50"]),
                "batch_gain": {"ours": gain_o, "reference": gain_r},
                "throughput_speedup": speedup["throughput"],
                "throughput_speedup_from_latency_and_gains": round(mr / mo * gain_o / gain_r, 2),
            }
    pairs = [(speedup["latency_p50"][k], speedup["latency_p50_median_of_rounds"][k]) for k in speedup["latency_p50"]]
    if "throughput" in speedup:
        pairs.append((speedup["throughput"], speedup["throughput_median_of_rounds"]))
    speedup["rounds_agree"] = all(a and b and 0.8 <= a / b <= 1.25 for a, b in pairs)
    return {"speedup": speedup, "consistency": consistency}


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def _print_report(console, report: dict) -> None:
    from rich.table import Table

    res = report["pipelines"]
    names = [n for n in PIPELINES if n in res]
    sets = report["photo_sets"]
    table = Table(title=f"catscan bench {report['run_id']} — {report['settings']['threads']} threads"
                        + (" (quick)" if report["quick"] else ""))
    table.add_column("metric")
    for n in names:
        table.add_column("Cat Scanner" if n == "ours" else "reference (2x ResNet-50)", justify="right")
    both = len(names) == 2
    if both:
        table.add_column("speed-up", justify="right")
        table.add_column("median of rounds / best rounds", justify="right")
    sp = report["speedup"]

    def row(label, cells, ratio=None, robust=None):
        cells = [c if c is not None else "—" for c in cells]
        if both:
            cells.append(f"{ratio:.1f}x" if ratio else "")
            cells.append(" / ".join(f"{x:.1f}x" for x in robust) if robust and all(robust) else "")
        table.add_row(label, *cells)

    def num(vals, fmt):
        return [fmt.format(v) if v is not None else None for v in vals]

    for s, info in sets.items():
        vals = [res[n]["latency"].get(s, {}).get("ms", {}).get("p50") for n in names]
        row(f"p50 ms, {info['label']} ({info['photos']})", num(vals, "{:.1f}"), sp.get("latency_p50", {}).get(s),
            (sp.get("latency_p50_median_of_rounds", {}).get(s), sp.get("latency_p50_best_rounds", {}).get(s)))
    if "oxford" in sets:
        row("p95 ms, Oxford", num([res[n]["latency"]["oxford"]["ms"]["p95"] for n in names], "{:.1f}"),
            sp.get("latency_p95", {}).get("oxford"))
        row("  decode / detect / classify p50 ms, Oxford",
            [" / ".join(f"{v:.1f}" if v is not None else "—" for v in res[n]["latency"]["oxford"]["stage_ms_p50"].values())
             for n in names])
        if all(res[n]["throughput"] for n in names):
            row(f"throughput, batches of {report['settings']['batch_size']} (photos/s)",
                num([res[n]["throughput"]["photos_per_s"] for n in names], "{:.1f}"), sp.get("throughput"),
                (sp.get("throughput_median_of_rounds"), sp.get("throughput_best_rounds")))
    if "ours" in res:
        for s, info in sets.items():
            lat = res["ours"]["latency"].get(s, {})
            if lat.get("detect_vs_centre_crop_p50"):
                row(f"  detect / v0.1 detect, p50 ms, {info['label']}",
                    [f"{lat['stage_ms_p50']['detect']:.1f} / {lat['centre_crop_detect_ms_p50']:.1f} = "
                     f"{lat['detect_vs_centre_crop_p50']:.2f}x" if n == "ours" else None for n in names])
    row("peak RSS (MB)", num([res[n].get("peak_rss_mb") for n in names], "{:.0f}"), sp.get("peak_rss"))
    row("cold start (s)", num([res[n]["cold_start_s"] for n in names], "{:.2f}"), sp.get("cold_start"))
    console.print(table)
    if "ours" in res:
        o = res["ours"]
        console.print(f"Cat Scanner runs on {o['runtime']}, precision {o['precision']}, {o['threads']} threads: "
                      + "; ".join(f"{role} {d['model']} ({d['backbone']}, {d['runtime']} {d['precision']})"
                                  for role, d in o["models"].items()))
    c = report.get("consistency")
    if c:
        console.print(f"Oxford: speed-up {c['latency_p50_speedup']}x on p50, {c['latency_mean_speedup']}x on the mean "
                      f"latency, {c['throughput_speedup']}x on throughput = mean speed-up x batch gain "
                      f"{c['batch_gain']['ours']} (ours) / {c['batch_gain']['reference']} (reference).")
    if both and not sp.get("rounds_agree", True):
        console.print("[yellow]warning: the rounds disagree (the pooled speed-up and the median of the per-round "
                      "speed-ups differ by more than 25 %): the load changed during the run. Prefer the median "
                      "of rounds / best rounds, or rerun on an idle machine.[/yellow]")
    if sp.get("latency_p50_per_round"):
        console.print("[dim]p50 speed-up per round: " + "; ".join(
            f"{s} {', '.join(str(x) for x in v)}" for s, v in sp["latency_p50_per_round"].items()) + "[/dim]")
    if "reference" in res:
        console.print(f"[dim]reference: {res['reference']['weights']}; {res['reference']['breeds_mode_note']}.[/dim]")
    m = report["machine"]
    console.print(f"[dim]load average start/end: {m['load_average_at_start'][0]} / {m['load_average_at_end'][0]} "
                  f"on {m['cpu_count']} cores.[/dim]")


# =========================================================================== entry point


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m catscanner.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=None)
    ap.add_argument("--shape-photos", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", default="bench.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", default=None)
    ap.add_argument("--models", default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reference-breeds", choices=REFERENCE_BREEDS_MODES, default="always")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--only", choices=PIPELINES, default=None, help="run one pipeline only")
    ap.add_argument("--worker", choices=PIPELINES, help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--t-spawn", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker_main(a.worker, a.job, a.t_spawn or time.time())
        return
    run_bench(photos=a.photos, shape_photos=a.shape_photos, rounds=a.rounds, threads=a.threads,
              json_out=a.json_out, quick=a.quick, data=a.data, models=a.models, batch_size=a.batch_size,
              reference_breeds=a.reference_breeds, runtime=a.runtime, precision=a.precision,
              pipelines=(a.only,) if a.only else PIPELINES)


if __name__ == "__main__":
    main()
