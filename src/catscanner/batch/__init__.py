"""Scan a whole photo archive: ``catscan batch``, on one machine or a Ray cluster, resumable.

SOURCE arguments -> :mod:`.sources` (the photos, with size and mtime) -> an engine
(:mod:`.local`: in-process :meth:`Scanner.scan_many`; :mod:`.ray_engine`: Ray Data actors) ->
:mod:`.rows` (one flat row per photo) -> :mod:`.sinks` (append-only Parquet or JSONL, read back
for ``--resume``). :mod:`.run` ties them together and keeps the tally for the summary.

Imports only :mod:`catscanner.runtime` (never ``cli``, ``web`` or ``training``). pyarrow and Ray
are optional: they are imported only when a run needs them (Parquet, a URI, ``--engine ray``).
"""
