"""``catscan scan`` end to end on real photos: JSON lines, verdicts, folders, bad files, exit codes,
the table, ``--annotate``, and that progress never leaks into stdout.

The breed model ships with the package, so every cat gets a sorted, thresholded breed mix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from catscanner.cli import app
from catscanner.cli.scan import display_names
from catscanner.runtime.breeds import BREEDS

REQUIRED_KEYS = {"path", "is_cat", "cat_probability", "breeds", "error"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

runner = CliRunner()


def scan(*args, columns: int = 80):
    """Run ``catscan scan`` in-process on one inference thread; returns click's Result."""
    result = runner.invoke(app, ["scan", "--threads", "1", *map(str, args)], env={"COLUMNS": str(columns)})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def json_records(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    assert lines, "no output"
    return [json.loads(line) for line in lines]  # every stdout line is one JSON object


def check_record(rec: dict) -> None:
    assert REQUIRED_KEYS <= rec.keys(), rec.keys()
    assert isinstance(rec["path"], str)
    if rec["error"] is not None:
        assert isinstance(rec["error"], str) and rec["error"]
        assert rec["is_cat"] is False and rec["breeds"] == []
        return
    assert isinstance(rec["is_cat"], bool)
    assert isinstance(rec["cat_probability"], float) and 0.0 <= rec["cat_probability"] <= 1.0
    check_breeds(rec)


def check_breeds(rec: dict, threshold: float = 5.0) -> None:
    breeds = rec["breeds"]
    assert isinstance(breeds, list)
    for b in breeds:
        assert set(b) == {"breed", "percent"} and b["breed"] in BREEDS
        assert isinstance(b["percent"], (int, float)) and threshold <= b["percent"] <= 100
    percents = [b["percent"] for b in breeds]
    assert percents == sorted(percents, reverse=True)
    assert len({b["breed"] for b in breeds}) == len(breeds)
    assert sum(percents) <= 100 + 0.05 * len(percents)  # each share rounded to 0.1
    if not rec["is_cat"]:
        assert breeds == [], "no cat, no breeds"
    else:
        assert breeds, "a cat must get a breed mix (the breed model ships with the package)"
        assert rec["breeds_note"] is None


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory, oxford_images: Path) -> dict[str, Path]:
    """A tmp folder tree of real photos (copies), relative name -> path; plus a non-image file."""
    root = tmp_path_factory.mktemp("photos")
    layout = {
        "Bengal_10.jpg": "Bengal_10.jpg",
        "wheaten_terrier_140.jpg": "wheaten_terrier_140.jpg",
        "cats/Persian_1.jpg": "Persian_1.jpg",
        "cats/deeper/Egyptian_Mau_14.jpg": "Egyptian_Mau_14.jpg",  # PNG data named .jpg
        "cats/deeper/Abyssinian_34.jpg": "Abyssinian_34.jpg",  # GIF data named .jpg
    }
    tree = {}
    for rel, src in layout.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(oxford_images / src, dest)
        tree[rel] = dest
    (root / "cats" / "notes.txt").write_text("not a photo, and not scanned: wrong suffix\n")
    tree["."] = root
    return tree


# --------------------------------------------------------------------------- JSON output


def test_json_lines_for_a_cat_and_a_dog(cat_photo: Path, dog_photo: Path):
    result = scan("--json", cat_photo, dog_photo)
    assert result.exit_code == 0, result.output
    records = json_records(result.stdout)
    assert [r["path"] for r in records] == [str(cat_photo), str(dog_photo)]
    for rec in records:
        check_record(rec)
        assert rec["error"] is None
    cat, dog = records
    assert cat["is_cat"] is True and cat["cat_probability"] >= 0.5
    assert cat["breeds"][0]["breed"] == "Bengal"
    assert (cat["width"], cat["height"]) == (500, 375)
    box = cat["box"]
    assert 0 <= box["left"] < box["right"] <= cat["width"] and 0 <= box["top"] < box["bottom"] <= cat["height"]
    assert [c["box"] for c in cat["cats"]][:1] == [box]
    assert dog["is_cat"] is False and dog["cat_probability"] < 0.5
    assert dog["box"] is None and dog["cats"] == []


def test_threshold_zero_lists_every_breed(cat_photo: Path):
    result = scan("--json", "--threshold", "0", cat_photo)
    assert result.exit_code == 0, result.output
    (rec,) = json_records(result.stdout)
    assert rec["is_cat"] is True
    check_breeds(rec, threshold=0.0)
    assert sorted(b["breed"] for b in rec["breeds"]) == sorted(BREEDS)
    assert sum(b["percent"] for b in rec["breeds"]) == pytest.approx(100, abs=0.7)
    assert rec["breeds"][0]["breed"] == "Bengal"


def test_folder_is_scanned_recursively(photo_tree: dict[str, Path]):
    result = scan("--json", photo_tree["."])
    assert result.exit_code == 0, result.output
    records = json_records(result.stdout)
    photos = {rel: p for rel, p in photo_tree.items() if rel != "."}
    assert sorted(Path(r["path"]) for r in records) == sorted(photos.values())  # notes.txt skipped
    by_name = {Path(r["path"]).name: r for r in records}
    for rec in records:
        check_record(rec)
        assert rec["error"] is None
    assert by_name["wheaten_terrier_140.jpg"]["is_cat"] is False
    for name in ("Bengal_10.jpg", "Persian_1.jpg"):
        assert by_name[name]["is_cat"] is True


def test_bad_files_are_reported_and_the_batch_goes_on(tmp_path: Path, cat_photo: Path, dog_photo: Path):
    text = tmp_path / "shopping_list.jpg"
    text.write_text("milk, eggs, cat food\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    half = tmp_path / "half.jpg"
    data = cat_photo.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    missing = tmp_path / "missing.jpg"
    args = [cat_photo, text, empty, half, missing, dog_photo]

    result = scan("--json", *args)
    assert result.exit_code == 1
    records = {r["path"]: r for r in json_records(result.stdout)}
    assert set(records) == {str(a) for a in args}  # one line per input, the good ones too
    for rec in records.values():
        check_record(rec)
    expected = {text: ("not_an_image", "not an image"), empty: ("empty", "empty"),
                half: ("corrupt", "truncated or corrupt"), missing: ("io_error", "Could not read")}
    for path, (code, phrase) in expected.items():
        rec = records[str(path)]
        assert rec["error_code"] == code and phrase in rec["error"], rec
    assert records[str(cat_photo)]["error"] is None and records[str(cat_photo)]["is_cat"] is True
    assert records[str(dog_photo)]["error"] is None and records[str(dog_photo)]["is_cat"] is False


def test_no_photos_is_a_usage_error(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("no photos here")
    result = scan(tmp_path)
    assert result.exit_code == 2
    assert "no photos found" in result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------- table output


def table_rows(stdout: str) -> list[list[str]]:
    """Cells of a rich table, with the lines of wrapped cells joined back together."""
    rows: list[list[str]] = []
    for line in ANSI.sub("", stdout).splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells[1]:  # the "cats" cell is only empty on a wrapped continuation line
            rows.append(cells)
        else:  # photo names are folded mid-word; other cells are wrapped at spaces
            rows[-1] = [rows[-1][0] + cells[0]] + [f"{a} {b}".strip() for a, b in zip(rows[-1][1:], cells[1:])]
    return rows


def test_table_names_each_photo_readably(photo_tree: dict[str, Path]):
    root = photo_tree["."]
    bad = root / "cats" / "broken.jpg"
    bad.write_text("not a photo")
    try:
        result = scan(root, columns=80)
    finally:
        bad.unlink()
    assert result.exit_code == 1
    assert "…" not in result.stdout, "nothing in the table may be cut off"
    assert str(root) not in result.stdout.replace("\n", ""), "names are relative to the common folder"
    rows = table_rows(result.stdout)
    names = [r[0] for r in rows]
    # the input order (folders are walked in sorted order), each name complete
    assert names == ["Bengal_10.jpg", "cats/Persian_1.jpg", "cats/broken.jpg",
                     "cats/deeper/Abyssinian_34.jpg", "cats/deeper/Egyptian_Mau_14.jpg",
                     "wheaten_terrier_140.jpg"]
    verdicts = {r[0]: r[1] for r in rows}  # the number of cats found, "no cat" or "error"
    assert verdicts["Bengal_10.jpg"] == "1" and verdicts["wheaten_terrier_140.jpg"] == "no cat"
    assert verdicts["cats/Persian_1.jpg"] == "1"
    assert verdicts["cats/broken.jpg"] == "error"
    assert "1 of 6 photos could not be scanned" in result.stderr


def test_table_for_one_photo_shows_its_file_name(cat_photo: Path):
    result = scan(cat_photo, columns=80)
    assert result.exit_code == 0, result.output
    (row,) = table_rows(result.stdout)
    name, cats, _, mix, each_cat = row
    assert name == cat_photo.name and cats == "1"
    assert mix.startswith("Bengal ")
    m = re.fullmatch(r"1\. Bengal \d+ % at (\d+),(\d+),(\d+),(\d+)", each_cat)
    assert m, each_cat
    left, top, right, bottom = map(int, m.groups())
    assert 0 <= left < right <= 500 and 0 <= top < bottom <= 375  # inside the 500x375 photo
    assert result.stderr == ""


def test_display_names():
    a, b = Path("/photos/2024/cat.jpg"), Path("/photos/2025/summer/dog.jpg")
    assert display_names([a]) == {str(a): "cat.jpg"}
    names = display_names([a, b])
    assert names == {str(a): os.path.join("2024", "cat.jpg"), str(b): os.path.join("2025", "summer", "dog.jpg")}
    rel = Path("x.jpg")
    assert display_names([rel]) == {"x.jpg": "x.jpg"}


# --------------------------------------------------------------------------- real process


def catscan_command() -> list[str]:
    script = Path(sys.executable).with_name("catscan.exe" if os.name == "nt" else "catscan")
    if script.exists():
        return [str(script)]
    found = shutil.which("catscan")
    assert found, "the catscan console script is not installed (pip install -e .)"
    return [found]


def test_console_script_keeps_stdout_pure_json(tmp_path: Path, cat_photo: Path, dog_photo: Path):
    missing = tmp_path / "missing.jpg"
    proc = subprocess.run([*catscan_command(), "scan", "--json", "--threads", "1", cat_photo, missing, dog_photo],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    records = json_records(proc.stdout)
    assert len(records) == 3
    assert {r["path"]: r["error"] is None for r in records} == {
        str(cat_photo): True, str(missing): False, str(dog_photo): True}


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bar_goes_to_stderr_not_into_json(cat_photo: Path, dog_photo: Path, oxford_images: Path):
    """With stderr on a terminal and --json piped to a file, the bar must not end up in the JSON."""
    import pty

    photos = [cat_photo, dog_photo, oxford_images / "Persian_1.jpg"]
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run([*catscan_command(), "scan", "--json", "--threads", "1", *photos],
                              stdout=subprocess.PIPE, stderr=slave, timeout=120,
                              env={**os.environ, "TERM": "xterm", "COLUMNS": "100"})
    finally:
        os.close(slave)
    reader.join(timeout=5)
    os.close(master)
    assert proc.returncode == 0
    records = json_records(proc.stdout.decode())
    assert [r["path"] for r in records] == [str(p) for p in photos]
    assert "scanning" in ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_annotate_saves_each_photo_with_its_result_drawn(tmp_path: Path, cat_photo: Path, dog_photo: Path):
    from PIL import Image

    out = tmp_path / "drawn"
    r = scan(str(cat_photo), str(dog_photo), "--annotate", str(out))
    assert r.exit_code == 0, r.output
    saved = sorted(p.name for p in out.iterdir())
    assert saved == sorted([cat_photo.with_suffix(".jpg").name, dog_photo.with_suffix(".jpg").name])
    with Image.open(cat_photo) as original, Image.open(out / cat_photo.with_suffix(".jpg").name) as drawn:
        assert drawn.size == original.size
        # the cat's box is drawn in the box colour (the photo itself has almost none of it)
        def box_coloured(img) -> int:
            rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            return int(((np.abs(r - 255) < 30) & (np.abs(g - 196) < 30) & (b < 40)).sum())

        assert box_coloured(drawn) > box_coloured(original) + 500


# --------------------------------------------------------------------------- hostile or careless use (issue 10)


@pytest.mark.parametrize("problem", ["missing", "locked"])
def test_an_unreadable_photo_fails_alone(tmp_path: Path, cat_photo: Path, problem: str):
    """One photo that cannot be read is reported (exit 1); the others are still scanned."""
    bad = tmp_path / f"{problem}.jpg"
    if problem == "locked":
        if os.geteuid() == 0:
            pytest.skip("root reads a mode-000 file anyway (the 'missing' case runs everywhere)")
        shutil.copyfile(cat_photo, bad)
        bad.chmod(0)
    result = scan("--json", cat_photo, bad)
    assert result.exit_code == 1, result.output
    records = {r["path"]: r for r in json_records(result.stdout)}
    assert records[str(cat_photo)]["error"] is None and records[str(cat_photo)]["is_cat"] is True
    assert records[str(bad)]["error_code"] == "io_error"
    assert "Could not read" in records[str(bad)]["error"]


def test_annotate_keeps_photos_that_share_a_name_apart(tmp_path: Path, cat_photo: Path, oxford_images: Path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(cat_photo, photos / "pet.jpg")  # 500x375
    with Image.open(oxford_images / "Persian_1.jpg") as other:
        other.convert("RGB").save(photos / "pet.png")
        other_size = other.size
    assert other_size != (500, 375)
    out = tmp_path / "drawn"
    r = scan(photos, "--annotate", out)
    assert r.exit_code == 0, r.output
    saved = sorted(out.iterdir())
    assert [p.name for p in saved] == ["pet.jpg", "pet.png.jpg"]  # one each: the second did not overwrite the first
    sizes = set()
    for path in saved:
        with Image.open(path) as img:
            sizes.add(img.size)
    assert sizes == {(500, 375), other_size}


def test_annotate_into_an_unwritable_place_is_a_usage_error(tmp_path: Path, cat_photo: Path):
    blocker = tmp_path / "a_file"
    blocker.write_text("a regular file, so nothing can be created under it")
    r = scan(cat_photo, "--annotate", blocker / "drawn")
    assert r.exit_code == 2, r.output
    assert "could not create" in r.stderr and str(blocker / "drawn") in r.stderr.replace("\n", "")
    assert "Traceback" not in r.output and r.stdout == ""


def test_standard_input_is_refused_by_name(cat_photo: Path):
    """``catscan scan -`` said "Could not read -: No such file or directory", as if "-" were a file."""
    r = scan("-")
    assert r.exit_code == 2 and "does not read a photo from standard input" in " ".join(r.stderr.split())


def test_a_photo_named_twice_is_scanned_once(tmp_path: Path, cat_photo: Path):
    """``catscan scan f/cat.jpg f/ ./f/cat.jpg`` gave three rows for one photo; ``catscan batch`` one."""
    (tmp_path / "f").mkdir()
    shutil.copyfile(cat_photo, tmp_path / "f" / "cat.jpg")
    os.mkfifo(tmp_path / "f" / "pipe.jpg")
    photo = tmp_path / "f" / "cat.jpg"
    r = scan("--json", photo, tmp_path / "f", tmp_path / "f" / "." / "cat.jpg", tmp_path / "f", tmp_path / "f" / "pipe.jpg")
    records = json_records(r.stdout)
    assert [rec["path"] for rec in records if rec["error"] is None] == [str(photo)]
    assert len([rec for rec in records if rec["error"] is not None]) == 1  # the pipe too, once
    r = scan(tmp_path / "f", columns=200)  # the pipe's row is named like the others, not by its full path
    assert re.search(r"│ pipe\.jpg +│ error", ANSI.sub("", r.stdout)), r.stdout


def test_absurd_thread_count_is_a_usage_error(cat_photo: Path):
    result = runner.invoke(app, ["scan", "--threads", "100000", str(cat_photo)], env={"COLUMNS": "80"})
    assert result.exit_code == 2, result.output
    message = ANSI.sub("", result.stderr)
    assert "Invalid value for '--threads'" in message and "256" in message, message
    assert result.stdout == ""


def test_the_verdict_band_takes_the_corner_that_hides_least():
    """``--annotate``'s band: bottom-left unless that hides more of a box or label than another corner;
    a small cat hidden whole counts more than a large one grazed; a band larger than the photo stays
    inside it from the top-left."""
    from catscanner.runtime.annotate import _band_corner

    photo, band = (1000, 500), (300, 100)
    assert _band_corner(photo, band, [], []) == (0, 400)
    assert _band_corner(photo, band, [(50, 380, 250, 480)], []) == (700, 400)  # a cat at the bottom-left
    # a large cat on the left half (grazed by either left corner), a small one at the bottom-right (hidden
    # whole by the band there, though it is the least area) and one at the top-right: on the large one
    cats = [(0, 0, 500, 500), (800, 420, 900, 490), (700, 0, 1000, 150)]
    assert _band_corner(photo, band, cats, []) == (0, 400)
    # a label at the top-left, boxes nowhere near the other corners: bottom-left still
    assert _band_corner(photo, band, [(0, 30, 400, 300)], [(0, 0, 120, 30)]) == (0, 400)
    assert _band_corner((200, 50), band, [], []) == (0, 0)  # wider and taller than the photo


def test_fit_detector_refuses_a_first_head_without_the_refit(tmp_path: Path):
    """Without --refit-all, --out is already the four-fifths head: asking for it twice is a usage error,
    reported before any data is read."""
    out = tmp_path / "first.onnx"
    result = runner.invoke(app, ["fit-detector", "--no-refit-all", "--first-head", str(out),
                                 "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d.onnx")])
    assert result.exit_code == 2, result.output
    assert "--first-head needs --refit-all" in result.output and not out.exists()


def test_brackets_in_file_names_and_errors_are_printed_as_text(tmp_path: Path, cat_photo: Path):
    """Rich markup is for our own styling: "persian [edited].jpg" and "bad [red]note.jpg" are file
    names, printed whole and unstyled, in the table and in its error column."""
    shutil.copy(cat_photo, tmp_path / "persian [edited].jpg")
    (tmp_path / "bad [red]note.jpg").write_bytes(b"not a photo [bold]at all")
    result = scan(tmp_path, columns=200)
    out = ANSI.sub("", result.stdout)
    assert result.exit_code == 1, result.output
    assert "persian [edited].jpg" in out and "bad [red]note.jpg" in out


def test_error_hints_keep_their_brackets(cat_photo: Path):
    """A usage error whose hint names an extra (pip install "catscanner[openvino]") prints it whole."""
    from catscanner.cli.common import fail

    def command():
        fail('install it: pip install "catscanner[openvino]"')

    import typer

    app_ = typer.Typer()
    app_.command()(command)
    result = runner.invoke(app_, [])
    assert result.exit_code == 2
    assert 'pip install "catscanner[openvino]"' in ANSI.sub("", result.output)


def test_annotate_never_overwrites_the_photos_it_scans(tmp_path: Path, cat_photo: Path, dog_photo: Path):
    """--annotate into a scanned folder (at any depth) is refused: into the scanned folder itself it
    replaced the photos with their drawings, and a drawing folder inside the tree is scanned as photos
    the next time. So is a drawing that would land on a photo named on its own. A folder outside the
    photos, even their parent, is fine."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    shutil.copyfile(cat_photo, photos / "cat.jpg")
    shutil.copyfile(dog_photo, photos / "sub" / "dog.jpg")
    original = (photos / "cat.jpg").read_bytes()
    for args in ((photos, "--annotate", photos), (photos, "--annotate", photos / "sub"),
                 (photos, "--annotate", photos / "drawn"), (photos / "cat.jpg", "--annotate", photos)):
        r = scan(*args)
        said = " ".join(ANSI.sub("", r.output).split())
        assert r.exit_code == 2 and "Choose a folder outside the photos" in said, (args, said)
    assert not (photos / "drawn").exists() and (photos / "cat.jpg").read_bytes() == original
    for _ in range(2):  # the same command twice: the drawings are not photos of the tree
        r = scan("--json", photos, "--annotate", tmp_path)
        assert r.exit_code == 0, r.output
        assert len(json_records(r.stdout)) == 2
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == ["cat.jpg", "sub__dog.jpg"]
    assert (photos / "cat.jpg").read_bytes() == original


def test_a_drawing_that_cannot_be_saved_is_reported_and_the_scan_goes_on(tmp_path: Path, cat_photo: Path):
    """A folder standing where a photo's drawing would go: that photo's drawing is reported on stderr
    (exit 1), every photo is still scanned and the other drawings are saved."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(cat_photo, photos / "blocked.jpg")
    shutil.copyfile(cat_photo, photos / "ok.jpg")
    out = tmp_path / "drawn"
    (out / "blocked.jpg").mkdir(parents=True)
    r = scan("--json", photos, "--annotate", out)
    assert r.exit_code == 1
    records = json_records(r.stdout)
    assert len(records) == 2 and all(rec["is_cat"] for rec in records)
    said = " ".join(ANSI.sub("", r.stderr).split())  # rich wraps long lines
    assert "blocked.jpg: its drawing was not saved" in said and "ok.jpg" not in said
    assert sorted(p.name for p in out.iterdir()) == ["blocked.jpg", "ok.jpg"] and (out / "blocked.jpg").is_dir()


def test_annotate_never_overwrites_a_file_it_did_not_draw(tmp_path: Path, cat_photo: Path, dog_photo: Path):
    """A user's own photo already in the --annotate folder under a drawing's name was silently replaced by
    the drawing. It is now left alone and reported (exit 1); an earlier drawing is replaced, so the same
    command can run again."""
    photos, out = tmp_path / "photos", tmp_path / "drawn"
    photos.mkdir()
    out.mkdir()
    shutil.copyfile(cat_photo, photos / "pet.jpg")
    shutil.copyfile(dog_photo, out / "pet.jpg")  # someone's photo, not a drawing
    theirs = (out / "pet.jpg").read_bytes()
    r = scan("--json", photos, "--annotate", out)
    assert r.exit_code == 1 and json_records(r.stdout)[0]["is_cat"] is True
    said = " ".join(ANSI.sub("", r.stderr).split())
    assert "is not marked as a Cat Scanner drawing" in said and "Choose an empty --annotate folder" in said, said
    assert (out / "pet.jpg").read_bytes() == theirs
    (out / "pet.jpg").unlink()
    os.mkfifo(out / "pet.jpg")  # a named pipe there: reported, not opened (opening it would block)
    r = scan("--json", photos, "--annotate", out)
    assert r.exit_code == 1 and "is not marked as a Cat Scanner drawing" in " ".join(r.stderr.split())
    fresh = tmp_path / "fresh"
    for _ in range(2):  # its own drawing from the first run is replaced by the second
        r = scan("--json", photos, "--annotate", fresh)
        assert r.exit_code == 0, r.output
    assert [p.name for p in fresh.iterdir()] == ["pet.jpg"]


def test_annotate_names_tell_which_photo_each_drawing_shows_and_fit_the_file_system(tmp_path: Path, cat_photo: Path):
    """Drawings were named by the photo's name without its ending (photo.webp -> photo-3.jpg, numbered
    by what else was in the run), and a deep folder's flattened name went past 255 bytes, so that photo
    got no drawing. A drawing now keeps the photo's ending, and a long name is shortened with a hash."""
    from PIL import Image

    photos = tmp_path / "photos"
    deep = photos / ("d" * 120) / ("e" * 120)
    deep.mkdir(parents=True)
    with Image.open(cat_photo) as img:
        for ending in ("png", "webp", "bmp"):
            img.convert("RGB").save(photos / f"photo.{ending}")
    shutil.copyfile(cat_photo, photos / "photo.jpg")
    shutil.copyfile(cat_photo, deep / ("p" * 100 + ".jpg"))
    out = tmp_path / "drawn"
    r = scan("--json", photos, "--annotate", out)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names[1:] == ["photo.bmp.jpg", "photo.jpg", "photo.png.jpg", "photo.webp.jpg"], names
    long_one = names[0]
    assert long_one.startswith("d" * 50) and long_one.endswith(".jpg") and len(long_one.encode()) <= 255
    from catscanner.cli.scan import annotated_names

    long_name = "é" * 200 + ".png"  # 400 bytes; and a photo named like its shortened drawing
    short = annotated_names([long_name])[long_name]
    both = annotated_names([long_name, short])
    assert len(set(both.values())) == 2 and all(len(n.encode()) <= 255 for n in both.values()), both


def test_a_terminal_without_unicode_gets_the_table_not_a_traceback(dog_photo: Path):
    env = {**os.environ, "PYTHONIOENCODING": "latin-1", "COLUMNS": "100"}
    out = subprocess.run([sys.executable, "-m", "catscanner", "scan", "--threads", "1", str(dog_photo)],
                         capture_output=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr.decode("latin-1")
    assert b"no cat" in out.stdout and b"Traceback" not in out.stderr


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and re.fullmatch(r"catscan \d+\.\d+\.\d+\S*\n", result.stdout)


@pytest.mark.parametrize("size", [(640, 240), (160, 120), (48, 36)])
def test_the_verdict_band_fits_narrow_and_tiny_photos(scanner, cat_photo: Path, size: tuple[int, int]):
    """Each cat's whole breed mix (shares down to 0 %) drawn on a narrow photo: the band's text fits
    its width (it ran off a 640-px photo), and on a tiny photo the band leaves most of it visible."""
    from PIL import Image, ImageDraw

    from catscanner.runtime.annotate import annotate, fit_band

    result = scanner.scan(cat_photo, threshold=0.0)  # all 12 breeds: the longest line there is
    texts = ["1 cat (100%)", "1: " + ", ".join(f"{s.breed} {s.percent:.0f} %" for s in result.cats[0].breeds)]
    with Image.open(cat_photo) as img:
        small = img.convert("RGB").resize(size)
    draw = ImageDraw.Draw(small.copy())
    scale = max(size) / 500
    font, line_h, shown = fit_band(draw, texts, size, scale)
    widest = max(draw.textlength(t, font=font) for t in texts[:shown])
    assert widest + round(12 * scale) <= size[0] or font.size == 8  # fits, or the smallest font
    assert line_h * shown + round(8 * scale) <= size[1] / 2 or shown == 1  # at most half the photo ...
    assert shown == (1 if size == (48, 36) else 2)  # ... else only the verdict
    drawn = np.asarray(annotate(small, result), dtype=np.int16)
    black = (drawn.max(axis=2) < 8).mean()  # the band is black; the photo has little pure black
    assert black < 0.6, black


@pytest.mark.parametrize("size", [(1920, 1080), (4032, 3024), (3024, 4032)])
def test_the_verdict_band_lists_every_cat_on_large_photos(size: tuple[int, int]):
    """The band's line spacing grew with the square of the photo's size (413-px lines for a 129-px
    font at 12 MP), so on an ordinary 1920x1080 or 12 MP photo with three cats it passed half the
    photo's height and showed only the verdict, not the cats' breeds."""
    from PIL import Image, ImageDraw

    from catscanner.runtime.annotate import fit_band

    texts = ["3 cats (99%)", "1: Ragdoll 61 %, Birman 27 %, Siamese 8 %", "2: Persian 90 %, Ragdoll 6 %",
             "3: Bengal 70 %, Egyptian Mau 22 %"]
    draw = ImageDraw.Draw(Image.new("RGB", size))
    font, line_h, shown = fit_band(draw, texts, size, max(size) / 500)
    assert shown == 4
    assert line_h <= 1.5 * font.size, (line_h, font.size)


def test_macos_metadata_files_are_skipped_and_an_empty_folder_names_the_endings(tmp_path: Path, cat_photo: Path):
    """A folder copied from a Mac holds ._name.jpg beside each photo (metadata, not a photo): skipped
    with a warning instead of failing once per photo; a folder without photos says what was looked for."""
    (tmp_path / "photos").mkdir()
    shutil.copyfile(cat_photo, tmp_path / "photos" / "cat.jpg")
    (tmp_path / "photos" / "._cat.jpg").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 80)  # AppleDouble header
    r = scan("--json", tmp_path / "photos")
    assert r.exit_code == 0, r.output
    assert [Path(rec["path"]).name for rec in json_records(r.stdout)] == ["cat.jpg"]
    assert "skipped 1 macOS metadata files" in " ".join(r.stderr.split())
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    r = scan(tmp_path / "empty")
    assert r.exit_code == 2 and ".heic" in r.output and ".jpg" in r.output
