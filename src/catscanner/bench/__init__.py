"""``catscan bench``: Cat Scanner against the reference pipeline, interleaved, on photos of every shape.

* :mod:`.harness` — the parent (photo sets, interleaved schedule, report) and the worker processes;
* :mod:`.reference` — the reference pipeline (two ResNet-50s in PyTorch eager mode);
* :mod:`.photos` — the photo sets: Oxford test photos, and 640x480, 12 MP, 3:1 panorama and 9:16
  portrait photos made from real photos in a temporary folder.

Importing this package imports neither PyTorch nor a model runtime: each worker loads only its own.
"""

from .harness import PIPELINES, main, run_bench

__all__ = ["PIPELINES", "main", "run_bench"]
