"""``catscan batch`` (issue 11): same answers as ``catscan scan --json`` with both engines,
resumable after a SIGKILL, errors as rows, every kind of SOURCE.

Real photos from the shared Oxford-IIIT Pet folder (read-only); everything written goes to tmp_path.
The Ray test starts a local 2-CPU Ray instance with 2 actors once (about half a minute of the
budget is Ray starting up).
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catscanner.cli import app

N_PHOTOS = 200
N_KILLED = 40  # photos of the killed-and-resumed runs
SRC = Path(__file__).resolve().parents[1] / "src" / "catscanner"


@pytest.fixture(scope="module")
def photos(oxford_images: Path) -> list[Path]:
    """200 real photos spread over all 37 breeds (the shared folder holds 175 per cat breed and 10
    per dog breed, so about 180 cats and 20 dogs)."""
    jpgs = sorted(oxford_images.glob("*.jpg"))
    picked = jpgs[:: max(1, len(jpgs) // N_PHOTOS)][:N_PHOTOS]
    assert len(picked) == N_PHOTOS
    return picked


@pytest.fixture(scope="module")
def bad_photos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "not_a_photo.jpg").write_text("this is not a photo\n")
    (folder / "empty.jpg").write_bytes(b"")
    return [folder / "not_a_photo.jpg", folder / "empty.jpg"]


@pytest.fixture(scope="module")
def list_file(photos, bad_photos, tmp_path_factory) -> Path:
    """A list file naming the 200 photos and the 2 bad ones (with a comment and a blank line)."""
    path = tmp_path_factory.mktemp("list") / "photos.txt"
    path.write_text("# photos for the batch test\n\n" + "\n".join(str(p) for p in [*photos, *bad_photos]) + "\n")
    return path


@pytest.fixture(scope="module")
def baseline(photos, bad_photos) -> dict[str, dict]:
    """``catscan scan --json`` on the same photos: the answers both engines must reproduce."""
    result = CliRunner().invoke(app, ["scan", "--json", "--threads", "2", *map(str, [*photos, *bad_photos])])
    assert result.exit_code == 1, result.output  # the two bad photos fail
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == N_PHOTOS + 2
    return {os.path.abspath(d["path"]): d for d in lines}


def expected_row(scan: dict) -> dict:
    """What a batch row must hold for a ``catscan scan --json`` answer (the fields not about timing)."""
    breeds = scan["breeds"]
    return {
        "is_cat": scan["is_cat"], "cat_probability": scan["cat_probability"], "n_cats": len(scan["cats"]),
        "top_breed": breeds[0]["breed"] if breeds else None, "top_breed_percent": breeds[0]["percent"] if breeds else None,
        "breeds": breeds, "cats": scan["cats"], "wild_cat": scan["wild_cat"], "width": scan["width"],
        "height": scan["height"], "error": scan["error"], "error_code": scan["error_code"],
    }


def read_rows(out: Path) -> list[dict]:
    if out.suffix == ".jsonl":
        return [json.loads(line) for line in out.read_text().splitlines()]
    import pyarrow.dataset as ds

    return ds.dataset(out, format="parquet").to_table().to_pylist()


def check_same_as_scan(rows: list[dict], baseline: dict[str, dict]) -> None:
    assert sorted(r["path"] for r in rows) == sorted(baseline), "every photo exactly once"
    mismatched = [r["path"] for r in rows if {k: r[k] for k in _ROW_KEYS} != expected_row(baseline[r["path"]])]
    assert not mismatched, f"{len(mismatched)} rows differ from catscan scan --json, e.g. {mismatched[:3]}"
    assert len({r["model_version"] for r in rows}) == 1
    for r in rows:
        st = os.stat(r["path"])
        assert (r["size"], r["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
    assert sum(r["is_cat"] for r in rows) > 150, "the sample holds cats"
    assert sum(not r["is_cat"] and r["error"] is None for r in rows) >= 5, "and dogs"


_ROW_KEYS = ("is_cat", "cat_probability", "n_cats", "top_breed", "top_breed_percent", "breeds", "cats", "wild_cat",
             "width", "height", "error", "error_code")


def test_local_engine_matches_scan_json(list_file, baseline, bad_photos, tmp_path):
    out = tmp_path / "results.parquet"
    result = CliRunner().invoke(app, ["batch", str(list_file), "--output", str(out), "--threads", "2",
                                      "--flush-every", "64"])
    assert result.exit_code == 1, result.output  # 1: some photos failed
    rows = read_rows(out)
    check_same_as_scan(rows, baseline)
    assert len(list(out.glob("part-*.parquet"))) >= 4  # 202 rows flushed every 64 (or every minute)
    bad = {r["path"]: r for r in rows if r["error"]}
    assert set(bad) == {str(p) for p in bad_photos}
    assert bad[str(bad_photos[0])]["error_code"] == "not_an_image"
    assert bad[str(bad_photos[1])]["error_code"] == "empty"
    assert "Scanned 202 photos" in result.output and "failed: 2" in result.output
    assert "not_an_image 1" in result.output and "empty 1" in result.output


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own deprecated settings
def test_ray_engine_matches_scan_json(photos, bad_photos, baseline, tmp_path):
    """Ray Data on a local 2-CPU instance, 2 actors; the sources given as arguments, output JSONL."""
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(app, ["batch", *map(str, [*photos, *bad_photos]), "--output", str(out),
                                      "--engine", "ray", "--actors", "2"])
    assert result.exit_code == 1, result.output
    assert "2 actors" in result.output
    check_same_as_scan(read_rows(out), baseline)


def _wait_for_rows(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if out.suffix == ".jsonl":
            done = out.exists() and out.read_bytes().count(b"\n") >= n
        else:
            done = len(list(out.glob("part-*.parquet"))) * 4 >= n if out.exists() else False
        if done or proc.poll() is not None:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {n} rows in {out} after {timeout} s")


def _start_batch(photos, tmp_path: Path, suffix: str, *more: str) -> tuple[Path, Path, subprocess.Popen]:
    """(folder, OUT, process) of a ``catscan batch`` of N_KILLED photos started in the background,
    flushing every 4 rows; ``more``: further arguments."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos[:N_KILLED]:
        (folder / p.name).symlink_to(p)
    out = tmp_path / f"results{suffix}"
    cmd = [sys.executable, "-m", "catscanner", "batch", str(folder), "--output", str(out), "--threads", "1",
           "--flush-every", "4", *more]
    return folder, out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_killed_run_resumes_with_every_photo_once(photos, tmp_path, suffix):
    """SIGKILL a ``catscan batch`` partway, then --resume: every photo is in OUT exactly once."""
    folder, out, proc = _start_batch(photos, tmp_path, suffix)
    try:
        _wait_for_rows(out, 8, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = read_rows(out)
    assert 8 <= len(before) < N_KILLED

    result = CliRunner().invoke(app, ["batch", str(folder), "--output", str(out), "--resume", "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert f"skipped {len(before)} photos already in" in result.output
    rows = read_rows(out)
    paths = [r["path"] for r in rows]
    assert sorted(paths) == sorted(str(folder / p.name) for p in photos[:N_KILLED])  # each exactly once
    assert {r["path"]: r for r in rows if r["path"] in {b["path"] for b in before}} == \
        {b["path"]: b for b in before}, "rows written before the kill are kept as they were"

    again = CliRunner().invoke(app, ["batch", str(folder), "--output", str(out), "--resume"])
    assert again.exit_code == 0 and "Scanned 0 photos" in again.output
    assert len(read_rows(out)) == N_KILLED


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_sigterm_stops_a_run_as_ctrl_c_does(photos, tmp_path, engine):
    """SIGTERM (a scheduler's stop, plain ``kill``) ended the process at once (-15), losing every row
    since the last flush; now the rows scanned so far are written and the run exits 130. Under Ray
    too: ``ray.init`` put in a handler of its own, which ended the process at once."""
    _, out, proc = _start_batch(photos, tmp_path, ".jsonl", "--engine", engine,
                                *(["--actors", "1"] if engine == "ray" else []))
    try:
        _wait_for_rows(out, 4, proc, timeout=180)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (proc.returncode, err.decode(errors="replace")[-800:])
    assert b"--resume" in err
    rows = read_rows(out)
    assert 4 <= len(rows) < N_KILLED and len({r["path"] for r in rows}) == len(rows)


def test_an_interrupt_right_after_a_flush_does_not_write_it_twice(photos, tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) landing just after a flush's write, before the flushed rows were forgotten,
    wrote them again when the run stopped (CI: 8 rows for 4 photos). Deterministic here: the write
    itself sends the signal as it returns."""
    from catscanner.batch import run as run_module
    from catscanner.batch.options import BatchOptions
    from catscanner.batch.rows import model_version
    from catscanner.runtime.contract import ModelFiles

    real_open = run_module.open_sink

    def open_interrupting(*args, **kwargs):
        sink = real_open(*args, **kwargs)
        write = sink.write

        def write_then_interrupt(rows):
            write(rows)
            if rows:
                os.kill(os.getpid(), signal.SIGINT)
        sink.write = write_then_interrupt
        return sink

    monkeypatch.setattr(run_module, "open_sink", open_interrupting)
    out = tmp_path / "results.jsonl"
    options = BatchOptions(model_version=model_version(ModelFiles.resolve(None)), threads=1)
    summary = run_module.run_batch([str(p) for p in photos[:12]], str(out), options, flush_every=4)
    rows = read_rows(out)
    assert summary.interrupted
    assert len(rows) == len({r["path"] for r in rows}) == 4


def test_output_is_not_overwritten_and_models_are_not_mixed(cat_photo, tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text(json.dumps({"path": str(cat_photo), "size": 1, "mtime_ns": 1, "model_version": "0.0.1+000000000000"}) + "\n")
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(out)])
    assert result.exit_code == 2 and "--resume" in result.output
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(out), "--resume"])
    assert result.exit_code == 2 and "other models" in result.output
    from_scan = tmp_path / "from_scan.jsonl"  # catscan scan --json output: rows without a model_version
    from_scan.write_text(json.dumps({"path": str(cat_photo), "is_cat": True}) + "\n")
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(from_scan), "--resume"])
    assert result.exit_code == 2 and "not written by catscan batch" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(tmp_path / "results.csv")])
    assert result.exit_code == 2 and ".parquet" in result.output


def test_glob_and_list_file_sources(oxford_images, tmp_path, monkeypatch):
    from catscanner.batch.sources import expand_sources

    pattern = str(oxford_images / "Bengal_1*.jpg")
    expected = sorted(str(p) for p in oxford_images.glob("Bengal_1*.jpg"))
    assert [p.path for p in expand_sources([pattern]).photos] == expected

    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    for name in ("Persian_1.jpg", "Sphynx_1.jpg"):
        (sub / name).symlink_to(oxford_images / name)
    (tmp_path / "a" / "notes.md").write_text("not a photo suffix: folders skip it")
    assert [Path(p.path).name for p in expand_sources([str(tmp_path / "a" / "**" / "*.jpg")]).photos] == \
        ["Persian_1.jpg", "Sphynx_1.jpg"]
    assert [Path(p.path).name for p in expand_sources([str(tmp_path / "a")]).photos] == ["Persian_1.jpg", "Sphynx_1.jpg"]

    monkeypatch.chdir(tmp_path)
    listing = tmp_path / "list.lst"
    listing.write_text(f"# a comment\na/b/Persian_1.jpg\n\n{pattern}\nmissing.jpg\na/b/Persian_1.jpg\n")
    found = expand_sources([str(listing)])
    paths = [p.path for p in found.photos]
    assert paths == [str(sub / "Persian_1.jpg"), *expected, str(tmp_path / "missing.jpg")]  # relative to cwd, once each
    assert found.photos[-1].size is None  # missing: it becomes an io_error row when scanned
    st = os.stat(expected[0])
    assert found.photos[1].key == (expected[0], st.st_size, st.st_mtime_ns)

    assert expand_sources([str(oxford_images / "no_such_*.jpg")]).warnings


def test_photos_at_a_uri_are_read_through_pyarrow_fs(oxford_images, baseline, tmp_path):
    """A bucket-like URI source (pyarrow's in-memory mock:// filesystem): prefix, glob, and reads."""
    from catscanner.batch.options import BatchOptions
    from catscanner.batch.rows import model_version
    from catscanner.batch.run import run_batch
    from catscanner.batch.sources import expand_sources, resolve_uri
    from catscanner.runtime.contract import ModelFiles

    names = sorted(Path(p).name for p in baseline if Path(p).parent == oxford_images)[:6]
    fs, root, _ = resolve_uri("mock:///bucket/")
    for i, name in enumerate(names):
        fs.create_dir(f"{root}day{i % 2}")
        with fs.open_output_stream(f"{root}day{i % 2}/{name}") as f:
            f.write((oxford_images / name).read_bytes())
    assert len(expand_sources(["mock:///bucket/"]).photos) == 6
    globbed = expand_sources(["mock:///bucket/day1/*.jpg"]).photos
    assert [p.path for p in globbed] == [f"mock:///bucket/day1/{n}" for n in names[1::2]]
    assert all(p.size == (oxford_images / p.path.rsplit("/", 1)[1]).stat().st_size for p in globbed)

    out = tmp_path / "uri.parquet"
    options = BatchOptions(model_version=model_version(ModelFiles.resolve(None)), threads=2)
    summary = run_batch(["mock:///bucket/**/*.jpg", "mock:///bucket/missing.jpg"], str(out), options)
    assert summary.scanned == 7 and dict(summary.failures) == {"io_error": 1}
    rows = read_rows(out)
    for r in rows:
        if r["error"]:
            assert r["path"] == "mock:///bucket/missing.jpg" and r["error_code"] == "io_error"
        else:
            assert {k: r[k] for k in _ROW_KEYS} == expected_row(baseline[str(oxford_images / r["path"].rsplit("/", 1)[1])])


def test_batch_keeps_the_layering_and_the_plain_install_light():
    """batch imports only runtime (never cli/web/training); runtime never imports batch; importing
    the CLI or running a local JSONL batch does not import pyarrow or Ray."""
    for path in (SRC / "batch").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
                assert node.module.split(".")[0] in ("runtime", "errors") or node.module == "", (path, node.module)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("catscanner."):
                assert node.module.split(".")[1] in ("runtime", "errors"), (path, node.module)
    for path in (SRC / "runtime").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert "batch" not in node.module.split("."), (path, node.module)
    code = ("import sys; from catscanner.cli import app; from catscanner.batch import run, local, sinks, rows; "
            "assert not {'pyarrow', 'ray'} & set(sys.modules), sorted({'pyarrow', 'ray'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_missing_extra_is_a_clear_usage_error(cat_photo, tmp_path, monkeypatch):
    """Without pyarrow, JSONL still works and Parquet says what to install; without Ray, --engine ray does."""
    for name in ("pyarrow", "pyarrow.parquet", "pyarrow.dataset", "pyarrow.fs", "ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(tmp_path / "r.parquet")])
    assert result.exit_code == 2 and 'pip install "catscanner[batch]"' in result.output
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(tmp_path / "r.jsonl"), "--engine", "ray"])
    assert result.exit_code == 2 and 'pip install "catscanner[ray]"' in result.output
    result = CliRunner().invoke(app, ["batch", "s3://bucket/photos/", "--output", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 2 and "needs pyarrow" in result.output
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    assert read_rows(tmp_path / "r.jsonl")[0]["n_cats"] >= 1


def test_resume_repairs_what_a_kill_can_leave(tmp_path):
    """A half-written last JSONL line is cut off; a half-written Parquet part (hidden temporary
    name) is ignored by readers and deleted; nothing complete is touched."""
    from catscanner.batch.sinks import open_sink

    row = {"path": "/p/a.jpg", "size": 1, "mtime_ns": 2, "model_version": "v"}
    jsonl = tmp_path / "r.jsonl"
    whole = (json.dumps(row) + "\n" + json.dumps({**row, "path": "/p/b.jpg"}) + "\n").encode()
    jsonl.write_bytes(whole + b'{"path": "/p/c.jpg", "si')
    sink = open_sink(str(jsonl), resume=True)
    assert sink.done_keys() == ({("/p/a.jpg", 1, 2), ("/p/b.jpg", 1, 2)}, {"v"})
    sink.close()
    assert jsonl.read_bytes() == whole

    jsonl.write_bytes(b"{broken\n" + whole)
    with pytest.raises(Exception, match="broken line in the middle"):
        open_sink(str(jsonl), resume=True)

    out = tmp_path / "r.parquet"
    out.mkdir()
    (out / ".inflight-part-x.parquet").write_bytes(b"PAR1 half written")
    sink = open_sink(str(out), resume=True)
    assert not (out / ".inflight-part-x.parquet").exists()
    assert sink.done_keys() == (set(), set())


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_a_file_name_that_is_not_utf8_gets_its_row(cat_photo, tmp_path, suffix):
    """An archive copied from an old Windows or Latin-1 system: "café.jpg" named in Latin-1 bytes.
    The run used to stop at the first flush (Parquet refuses lone surrogates) and --resume never got
    past it; now its row stores the name with the odd byte as \\xe9, and a resume finds it done."""
    folder = tmp_path / "photos"
    folder.mkdir()
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.jpg")
    (folder / "plain.jpg").write_bytes(cat_photo.read_bytes())
    Path(odd).write_bytes(cat_photo.read_bytes())
    out = tmp_path / f"results{suffix}"
    for resume in ([], ["--resume"]):
        result = CliRunner().invoke(app, ["batch", str(folder), "--output", str(out), "--threads", "1", *resume])
        assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == [str(folder) + "/caf\\xe9.jpg", str(folder / "plain.jpg")]
    assert all(r["is_cat"] and r["error"] is None for r in rows)  # each scanned once, both cats
    scanned = CliRunner().invoke(app, ["scan", "--json", "--threads", "1", odd])
    assert json.loads(scanned.stdout)["path"] == str(folder) + "/caf\\xe9.jpg"  # valid JSON text, no lone surrogate


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_a_resume_still_reports_the_failures_of_the_earlier_run(cat_photo, tmp_path, suffix):
    """A resume that only skips rows must not say "failed: 0" and exit 0 while the output holds a failed
    row for one of the photos: a script that reruns until exit 0 would take the archive for clean."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(cat_photo.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a photo")
    out = tmp_path / f"results{suffix}"
    first = CliRunner().invoke(app, ["batch", str(folder), "--output", str(out), "--threads", "1"])
    assert first.exit_code == 1 and "failed: 1" in first.output
    again = CliRunner().invoke(app, ["batch", str(folder), "--output", str(out), "--threads", "1", "--resume"])
    assert again.exit_code == 1, again.output
    assert "Scanned 0 photos" in again.output and "failed in an earlier run: 1" in again.output
    assert len(read_rows(out)) == 2


def test_nothing_in_a_folder_is_dropped_silently(cat_photo, tmp_path):
    """A named pipe called .jpg is an error row (batch dropped it while scan reported it); a linked
    folder is not followed but named in a warning; scan and batch list a folder alike."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(cat_photo.read_bytes())
    os.mkfifo(folder / "pipe.jpg")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "more.jpg").write_bytes(cat_photo.read_bytes())
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(app, ["batch", str(folder), "--output", str(out), "--threads", "1"])
    assert result.exit_code == 1
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert set(rows) == {"cat.jpg", "pipe.jpg"}
    assert rows["pipe.jpg"]["error_code"] == "io_error" and "named pipe" in rows["pipe.jpg"]["error"]
    said = " ".join(result.output.split())
    assert "linked folder, not followed" in said
    scanned = CliRunner().invoke(app, ["scan", "--json", "--threads", "1", str(folder)])
    records = {Path(json.loads(line)["path"]).name: json.loads(line) for line in scanned.stdout.splitlines()}
    assert set(records) == {"cat.jpg", "pipe.jpg"} and records["pipe.jpg"]["error_code"] == "io_error"


def test_a_glob_does_not_follow_a_linked_folder_round_a_loop(cat_photo, tmp_path):
    """``photos/**/*.jpg`` under a folder holding a link to its parent: glob followed the link round
    and round and batch scanned one photo 41 times; now a glob, like a folder, skips the link with a
    warning, and a pattern without ``**`` looks no deeper than it reaches."""
    from catscanner.batch.sources import expand_sources

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "cat.jpg").write_bytes(cat_photo.read_bytes())
    (folder / "top.jpg").write_bytes(cat_photo.read_bytes())
    (folder / "sub" / "loop").symlink_to("..", target_is_directory=True)
    found = expand_sources([str(folder / "**" / "*.jpg")])
    assert [p.path for p in found.photos] == [str(folder / "sub" / "cat.jpg"), str(folder / "top.jpg")]
    assert any("loop: a linked folder, not followed" in w for w in found.warnings), found.warnings
    assert [p.path for p in expand_sources([str(folder / "*.jpg")]).photos] == [str(folder / "top.jpg")]
    # a pattern without ** cannot loop: it goes through a linked folder, as glob does
    assert [p.path for p in expand_sources([str(folder / "sub" / "*" / "*.jpg")]).photos] == \
        [str(folder / "sub" / "loop" / "top.jpg")]
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(app, ["batch", str(folder / "**" / "*.jpg"), "--output", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(Path(r["path"]).name for r in read_rows(out)) == ["cat.jpg", "top.jpg"]


def test_a_mistyped_root_and_a_damaged_part_are_usage_errors_that_say_what_to_do(cat_photo, tmp_path):
    """``catscan batch /mnt/archve`` scanned the missing folder as one failed photo and left a table
    with that row; a Parquet part cut short by hand stopped every --resume with pyarrow's error and
    the advice to rerun the same command. Both are now exit 2, saying what to do."""
    missing = tmp_path / "archve"
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(app, ["batch", str(missing), "--output", str(out)])
    assert result.exit_code == 2 and "no such file or folder" in " ".join(result.output.split())
    assert not out.exists()

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        (photos / f"cat{i}.jpg").write_bytes(cat_photo.read_bytes())
    table = tmp_path / "results.parquet"
    assert CliRunner().invoke(app, ["batch", str(photos), "--output", str(table), "--threads", "1"]).exit_code == 0
    (part,) = table.glob("part-*.parquet")
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    result = CliRunner().invoke(app, ["batch", str(photos), "--output", str(table), "--resume", "--threads", "1"])
    said = "".join(result.output.split())  # rich wraps long words too
    assert result.exit_code == 2 and part.name in said and "Moveitoutof" in said, said
    part.unlink()  # as the message says: the photos are scanned again
    result = CliRunner().invoke(app, ["batch", str(photos), "--output", str(table), "--resume", "--threads", "1"])
    assert result.exit_code == 0 and len(read_rows(table)) == 2


def test_a_list_file_from_notepad_or_in_latin1_names_its_photos(cat_photo, tmp_path):
    """A list saved with a byte-order mark, naming a file whose name is Latin-1 bytes: both photos
    are found (the mark was read as part of the first path; Latin-1 stopped the run)."""
    (tmp_path / "first.jpg").write_bytes(cat_photo.read_bytes())
    latin = os.fsencode(str(tmp_path)) + b"/caf\xe9.jpg"
    Path(os.fsdecode(latin)).write_bytes(cat_photo.read_bytes())
    listing = tmp_path / "photos.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + os.fsencode(str(tmp_path / "first.jpg")) + b"\n" + latin + b"\n")
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(app, ["batch", str(listing), "--output", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert len(rows) == 2 and all(r["is_cat"] for r in rows)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_one_run_at_a_time_per_output_and_no_empty_output_left(cat_photo, tmp_path, suffix):
    """A second run on an output another run is writing is refused (both wrote every row, twice);
    a run that finds nothing to scan leaves no empty output behind."""
    from catscanner.batch.options import BatchError
    from catscanner.batch.sinks import open_sink

    out = tmp_path / f"results{suffix}"
    first = open_sink(str(out), resume=True)
    try:
        with pytest.raises(BatchError, match="another catscan batch is writing"):
            open_sink(str(out), resume=True)
        (tmp_path / "photo.jpg").write_bytes(cat_photo.read_bytes())
        busy = CliRunner().invoke(app, ["batch", str(tmp_path / "photo.jpg"), "--output", str(out), "--resume"])
        assert busy.exit_code == 2 and "another catscan batch" in " ".join(busy.output.split())
    finally:
        first.close()
    assert not out.exists()  # the first sink wrote nothing: what it created is gone

    nothing = CliRunner().invoke(app, ["batch", str(tmp_path / "*.heic"), "--output", str(out)])
    assert nothing.exit_code == 2 and not out.exists()


def test_a_run_that_removes_its_empty_output_does_not_hand_its_lock_to_a_ghost(tmp_path):
    """Run A made OUT and wrote nothing; run B opened OUT just before A removed it. B must not go on
    holding a lock on a file no longer there (its rows would vanish, or a third run would write beside it)."""
    from catscanner.batch.options import BatchError
    from catscanner.batch.sinks import _lock, open_sink

    out = tmp_path / "r.jsonl"
    a = open_sink(str(out), resume=True)
    b_file = open(out, "ab")  # B has opened the file A is about to remove
    a.close()
    assert not out.exists()
    with pytest.raises(BatchError, match="another catscan batch"):
        _lock(b_file, str(out))
    assert b_file.closed


def test_a_parquet_output_that_cannot_be_written_is_a_usage_error(cat_photo, tmp_path):
    out = tmp_path / "r.parquet"
    (out / ".catscan-batch.lock").mkdir(parents=True)  # where the lock file goes: cannot be opened as a file
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(out), "--resume"])
    assert result.exit_code == 2 and "could not write" in " ".join(result.output.split())


def test_models_that_will_not_load_stop_the_run_as_a_usage_error(cat_photo, tmp_path):
    """A model file that cannot be loaded ends the run before any photo: exit 2 as for ``catscan scan``,
    and no hint to ``--resume`` an output that was never written. The runtime is chosen with
    ``--runtime`` as for ``catscan scan`` (an unknown one is a usage error too)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "detector.onnx").write_bytes(b"not a model")
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(out), "--models", str(models)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "could not" in text.lower() and "--resume" not in text, result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(out), "--runtime", "bogus"])
    assert result.exit_code == 2 and "Unknown runtime 'bogus'" in " ".join(result.output.split()), result.output
    result = CliRunner().invoke(app, ["batch", str(cat_photo), "--output", str(out), "--runtime", "onnxruntime",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["is_cat"] is True
