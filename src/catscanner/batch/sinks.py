"""Where rows go: append-only, so a crash loses at most the rows not yet flushed.

- ``OUT.parquet`` is a **folder** of Parquet part files (what Spark, DuckDB, pandas, Polars and
  ``ray.data.read_parquet`` read as one table). Each flush writes one new part file: locally to a
  hidden temporary name that is renamed when complete; on object storage (S3, GCS) an object only
  appears once its upload is complete. A killed run therefore leaves only whole part files (and
  maybe a hidden temporary one, which readers skip and ``--resume`` deletes). Nothing already
  written is ever rewritten.
- ``OUT.jsonl`` is one local file, one JSON object per line, appended and fsynced per flush. A
  killed run can leave a half-written last line; ``--resume`` cuts it off before appending.
  (Object stores cannot append to a file: write Parquet there.)

``done_keys()`` reads the (path, size, mtime_ns) of every row already written, for ``--resume``.
One run at a time per OUT: a local OUT is locked while a run writes to it (a second run is refused).
An OUT a run created and wrote nothing to is removed when it ends.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable

from .options import BatchError
from .rows import KEY_COLUMNS, rows_to_table
from .sources import is_uri, pyarrow_fs, resolve_uri

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
_INFLIGHT = ".inflight-"


class OutputError(BatchError):
    """OUT cannot be used as asked (exists without --resume, wrong suffix, not writable, ...)."""


def _lock(f, output: str) -> None:
    """Hold an exclusive lock on the open file ``f`` until it is closed, or refuse: another run is
    writing to ``output`` (two runs would write every row twice), or the file was removed meanwhile
    (by a run that ended having written nothing: the lock would guard nothing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not os.path.exists(f.name) or not os.path.samestat(os.fstat(f.fileno()), os.stat(f.name)):
            raise BlockingIOError
    except BlockingIOError:
        f.close()
        raise OutputError(f"another catscan batch is writing to {output}: wait for it to end, or choose "
                          "another output.") from None


def pyarrow_parquet():
    try:
        import pyarrow.dataset
        import pyarrow.parquet
    except ImportError:
        raise OutputError('writing Parquet needs pyarrow: pip install "catscanner[batch]" '
                          "(or write JSONL: --output results.jsonl)") from None
    return pyarrow.parquet, pyarrow.dataset


def open_sink(output: str, *, resume: bool) -> "ParquetSink | JsonlSink":
    lower = output.rstrip("/").lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return ParquetSink(output.rstrip("/"), resume=resume)
    if lower.endswith(JSONL_SUFFIXES):
        if is_uri(output) and not output.startswith("file://"):
            raise OutputError(f"{output}: JSONL is appended to a local file; object stores cannot append. "
                              "Write Parquet there (--output s3://bucket/results.parquet).")
        return JsonlSink(output[len("file://"):] if output.startswith("file://") else output, resume=resume)
    raise OutputError(f"{output}: the output must end in .parquet (a folder of Parquet files) or .jsonl.")


class ParquetSink:
    """A folder of part files ``part-<time>-<id>.parquet``, one per flush."""

    format = "parquet"

    def __init__(self, output: str, *, resume: bool):
        self.pq, self.ds = pyarrow_parquet()
        fs_mod = pyarrow_fs()
        if is_uri(output):
            self.fs, self.folder, _ = resolve_uri(output)
            self.local = False
        else:
            self.fs, self.folder = fs_mod.LocalFileSystem(), os.path.abspath(output)
            self.local = True
        self.output = output
        info = self.fs.get_file_info(self.folder)
        self.existed = info.type != fs_mod.FileType.NotFound
        if info.type == fs_mod.FileType.File:
            raise OutputError(f"{output} is a file; Parquet output is a folder of part files. Choose another name.")
        if self.existed and not resume:
            if self._parts():
                raise OutputError(f"{output} already holds results: pass --resume to continue it, or choose another name.")
        try:
            self.fs.create_dir(self.folder, recursive=True)
        except OSError as e:
            raise OutputError(f"could not create {output}: {e}") from None
        self._lock_file = None
        self.written = False
        self._before: tuple[set[tuple], set[str], set[tuple]] | None = None  # read on demand, once
        if self.local:  # readers skip names starting with "."
            try:
                self._lock_file = open(os.path.join(self.folder, ".catscan-batch.lock"), "a")
            except OSError as e:
                raise OutputError(f"could not write {output}: {e.strerror or e}. Choose a path you can write to.") from None
            _lock(self._lock_file, output)
        try:
            if resume:  # what a killed run left half-written
                for i in self._infos():
                    if os.path.basename(i.path).startswith(_INFLIGHT):
                        self.fs.delete_file(i.path)
        except BaseException:
            self.close()
            raise

    def _infos(self):
        fs_mod = pyarrow_fs()
        return [i for i in self.fs.get_file_info(fs_mod.FileSelector(self.folder, allow_not_found=True))
                if i.type == fs_mod.FileType.File]

    def _parts(self) -> list[str]:
        return sorted(i.path for i in self._infos() if os.path.basename(i.path).startswith("part-")
                      and i.path.endswith(".parquet"))

    def read(self, columns: Iterable[str]) -> list[dict]:
        parts = self._parts()
        if not parts:
            return []
        try:
            table = self.ds.dataset(parts, filesystem=self.fs, format="parquet").to_table(columns=list(columns))
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError: a damaged part
            raise BatchError(self._damaged(parts, e)) from None
        return table.to_pylist()

    def _damaged(self, parts: list[str], error: Exception) -> str:
        """What to do about a part file that cannot be read (cut short or changed after it was written:
        a run writes each part whole, under a temporary name first)."""
        for part in parts:
            try:
                self.pq.read_metadata(part, filesystem=self.fs)
            except (OSError, ValueError) as e:
                return (f"{part} cannot be read ({e}): it was cut short or changed after it was written. Move it "
                        f"out of {self.folder} and run again with --resume: its photos are scanned again.")
        return f"the parts of {self.folder} cannot be read together ({error}). Write to a new output."

    def done_keys(self) -> tuple[set[tuple], set[str]]:
        """(keys of the rows written so far, the model versions they were scanned with)."""
        keys, versions, _ = self._written_keys()
        return keys, versions

    def failed_keys(self) -> set[tuple]:
        """Keys of the rows written so far that record a failure."""
        return self._written_keys()[2]

    def _written_keys(self) -> tuple[set[tuple], set[str], set[tuple]]:
        """(keys, model versions, keys of failed rows) of what was written before this run: the part
        files are read once, however many of these a resume asks for."""
        if self._before is None:
            rows = self.read([*KEY_COLUMNS, "model_version", "error"])
            keys = [tuple(r[c] for c in KEY_COLUMNS) for r in rows]
            self._before = (set(keys), {r["model_version"] for r in rows},
                            {k for k, r in zip(keys, rows) if r["error"]})
        return self._before

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        name = f"part-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"
        final = f"{self.folder}/{name}"
        table = rows_to_table(rows)
        if self.local:
            tmp = f"{self.folder}/{_INFLIGHT}{name}"
            self.pq.write_table(table, tmp, filesystem=self.fs)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        else:  # an object appears only when its upload completes
            self.pq.write_table(table, final, filesystem=self.fs)
        self.written = True

    def close(self) -> None:
        if self._lock_file is None:
            return
        if not self.existed and not self.written:  # made by this run, which found nothing to write:
            os.remove(self._lock_file.name)  # removed while still locked (see _lock)
            if not os.listdir(self.folder):
                os.rmdir(self.folder)
        self._lock_file.close()
        self._lock_file = None


class JsonlSink:
    """One local JSONL file, appended per flush."""

    format = "jsonl"

    def __init__(self, output: str, *, resume: bool):
        self.output = output
        self.path = os.path.abspath(output)
        self.existed = os.path.exists(self.path)
        if os.path.isdir(self.path):
            raise OutputError(f"{output} is a folder; JSONL output is one file. Choose another name.")
        if self.existed and os.path.getsize(self.path) > 0 and not resume:
            raise OutputError(f"{output} already holds results: pass --resume to continue it, or choose another name.")
        self._keys: set[tuple] = set()
        self._failed: set[tuple] = set()
        self._versions: set[str] = set()
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._file = open(self.path, "ab")
        except OSError as e:
            raise OutputError(f"could not write {output}: {e.strerror or e}. Choose a path you can write to.") from None
        _lock(self._file, output)  # before reading: another run may be appending
        if self.existed:
            try:
                self._read_and_repair()
            except BaseException:
                self._file.close()
                raise

    def _read_and_repair(self) -> None:
        """Read the keys of an existing file; a half-written last line (from a killed run) is cut off."""
        good_end = 0
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("no end of line")
                    row = json.loads(line)
                except ValueError:
                    if good_end + len(line) < size:
                        raise OutputError(f"{self.output} has a broken line in the middle (byte {good_end}); "
                                          "fix or move the file before resuming.") from None
                    break  # the last line of a killed run
                key = tuple(row.get(c) for c in KEY_COLUMNS)
                self._keys.add(key)
                if row.get("error"):
                    self._failed.add(key)
                self._versions.add(row.get("model_version"))
                good_end += len(line)
        if good_end < size:
            os.truncate(self.path, good_end)

    def done_keys(self) -> tuple[set[tuple], set[str]]:
        return self._keys, self._versions

    def failed_keys(self) -> set[tuple]:
        return self._failed

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        self._file.write("".join(json.dumps(r) + "\n" for r in rows).encode())
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file.closed:
            return
        if not self.existed and os.fstat(self._file.fileno()).st_size == 0:  # made by this run, which wrote
            os.remove(self.path)  # nothing: removed while still locked (see _lock)
        self._file.close()
