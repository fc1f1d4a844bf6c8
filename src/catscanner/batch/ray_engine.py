"""``--engine ray``: Ray Data over a local Ray instance or an existing cluster (``--ray-address``).

The photo list (path, size, mtime; not the bytes) becomes a Ray dataset of small blocks;
``map_batches`` sends each block to a pool of :class:`ScanActor` actors, each of which loads the
models once and reads and scans its photos itself (local paths, or URIs through ``pyarrow.fs``),
so a photo that cannot be read is an error row, not a failed task. The driver streams the
result rows back (``iter_batches``) and writes them with the same sinks as the local engine, so
progress, ``--resume`` and the output format do not depend on the engine.

Resources: every actor reserves ``cpus_per_actor`` CPUs (default 0.5). With 1 CPU per actor, a
pool as large as the machine reserves every CPU, and a Ray Data read stage (``read_binary_files``)
can then never be scheduled: a toy pipeline on a 2-CPU machine hung that way ("3/2 CPU",
backpressured; issue 11). This pipeline has no read tasks (the paths come from the driver; actors
read the files) and also runs with 2 actors x 1 CPU on 2 CPUs, but half a CPU each keeps room for
Ray's own tasks and for other work on a shared cluster, while the actors still use the cores
through ONNX Runtime's threads.

On a cluster, every node needs catscanner installed (``pip install "catscanner[ray]"``), the same
models (each actor checks the model version against the driver's) and access to the photos:
a shared file system or object storage, not a path only the driver can see.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict

from .options import BatchError, BatchOptions
from .sources import Photo

MAX_BLOCK_ROWS = 256  # photos per Ray block: one actor call; results return per block
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20  # rows and paths only; the photos never enter the object store


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise BatchError('--engine ray needs Ray: pip install "catscanner[ray]"') from None
    return ray


class ScanActor:
    """Loads the models once; turns a block of photos (pyarrow table) into a block of rows."""

    def __init__(self, options: BatchOptions, threads: int):
        from ..runtime.scanner import Scanner
        from .rows import model_version

        self.options = options
        self.scanner = Scanner(options.models, threads=threads, runtime=options.runtime, precision=options.precision)
        found = model_version(self.scanner.models)
        if found != self.options.model_version:
            raise RuntimeError(f"this node's models are {found}, the driver's are {self.options.model_version}: "
                               "install the same catscanner and models on every node.")

    def __call__(self, batch):
        from .rows import rows_to_table
        from .scanning import scan_photos

        photos = [Photo(**r) for r in batch.to_pylist()]
        rows = list(scan_photos(self.scanner, photos, threshold=self.options.threshold,
                                batch_size=self.options.batch_size, model_version=self.options.model_version))
        return rows_to_table(rows)


def run_ray(photos: Sequence[Photo], options: BatchOptions, *, log=None) -> Iterator[dict]:
    """Rows as actors finish their blocks. Starts (and afterwards stops) a local Ray instance with
    every CPU unless ``options.ray_address`` names a cluster or Ray is already initialised."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        quiet = {"logging_level": logging.ERROR, "log_to_driver": True}
        on_term = signal.getsignal(signal.SIGTERM)  # ray.init installs its own, which ends the process at once
        if options.ray_address:
            ray.init(address=options.ray_address, **quiet)
        else:
            # Ray starts its workers at niceness 15; at 0 the actors compete for the CPUs on equal
            # terms with everything else on the machine, as the local engine does.
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     _system_config={"worker_niceness": 0}, **quiet)
        if on_term is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_term)  # keep the caller's (catscan batch: flush, exit 130)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # our own progress line is on stderr
        ctx.enable_auto_log_stats = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)

        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actors = options.actors or cpus
        threads = options.threads or max(1, cpus // actors)
        if log:
            log(f"Ray: {cpus} CPUs, {actors} actors x {threads} ONNX threads, "
                f"{options.cpus_per_actor} CPU reserved per actor")
        if not photos:
            return
        # Small blocks (at least 16 per actor) keep every actor busy to the end and the progress
        # smooth; at most MAX_BLOCK_ROWS so results keep flowing back on a large cluster.
        block_rows = max(options.batch_size, min(MAX_BLOCK_ROWS, math.ceil(len(photos) / (16 * actors))))
        ds = ray.data.from_items([asdict(p) for p in photos],
                                 override_num_blocks=math.ceil(len(photos) / block_rows)).map_batches(
            ScanActor, fn_constructor_kwargs={"options": options, "threads": threads},
            batch_size=block_rows, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=options.cpus_per_actor,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            yield from batch.to_pylist()
    finally:
        if started:
            ray.shutdown()
