"""``catscan evaluate --data`` on any labelled photo set: labels come from the annotation lines
(never file names), a folder per breed, or a CSV; unknown breeds and missing files are listed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catscanner.cli import app
from catscanner.errors import CatScannerError
from catscanner.runtime.breeds import BREEDS
from catscanner.training.data import read_photo_set, read_split

runner = CliRunner()


@pytest.fixture(scope="module")
def sample(oxford_dir):
    """2 test photos per breed (24), spread over the split."""
    test = read_split(oxford_dir, "test")
    return [it for label in range(12) for it in [t for t in test if t.label == label][::40][:2]]


def _evaluate(data: Path, out: Path, *extra: str) -> dict:
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--out", str(out), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_oxford_layout_with_anonymised_file_names(tmp_path, oxford_dir, sample):
    """File names say nothing (photo_0.jpg ...): the breed is read from CLASS-ID / BREED-ID."""
    root = tmp_path / "pets"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    lines = ["#Image CLASS-ID SPECIES BREED ID"]
    lines_by_name = {ln.split()[0]: ln.split()[1:] for ln in (oxford_dir / "annotations" / "test.txt").read_text().splitlines()
                     if ln and not ln.startswith("#")}
    for i, it in enumerate(sample):
        shutil.copy(it.path, root / "images" / f"photo_{i}.jpg")
        lines.append(" ".join([f"photo_{i}", *lines_by_name[it.name]]))
    (root / "annotations" / "test.txt").write_text("\n".join(lines) + "\n")

    items = read_photo_set(root, "test")
    assert [it.breed for it in items] == [it.breed for it in sample]
    m = _evaluate(root, tmp_path / "reports")
    assert m["n"] == 24 and m["accuracy"] >= 0.75
    assert (tmp_path / "reports" / "confusion_matrix_test.png").stat().st_size > 10_000


def test_folder_per_breed_and_csv_give_the_same_answer(tmp_path, sample):
    folders = tmp_path / "by_breed"
    rows = ["path,breed"]
    for it in sample:
        name = it.breed if it.label % 2 else it.breed.replace(" ", "_")  # both spellings are accepted
        (folders / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(it.path, folders / name / f"{it.name}.jpg")
        rows.append(f"by_breed/{name}/{it.name}.jpg,{it.breed.lower()}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    by_folder = _evaluate(folders, tmp_path / "r1")
    by_csv = _evaluate(tmp_path / "labels.csv", tmp_path / "r2")
    assert by_folder["n"] == by_csv["n"] == 24
    assert by_folder["accuracy"] == by_csv["accuracy"] >= 0.75
    assert by_folder["confusion_matrix"] == by_csv["confusion_matrix"]


def test_unknown_breeds_and_missing_files_are_listed(tmp_path, sample):
    (tmp_path / "Tabby").mkdir()
    (tmp_path / "Bengal").mkdir()
    shutil.copy(sample[2].path, tmp_path / "Bengal" / "a.jpg")
    with pytest.raises(CatScannerError, match=r"unknown breed folders \['Tabby'\]"):
        read_photo_set(tmp_path)

    csv = tmp_path / "bad.csv"
    csv.write_text("path,breed\nBengal/a.jpg,Bengal\nBengal/gone.jpg,Bengal\nBengal/a.jpg,Tabby\n")
    result = runner.invoke(app, ["evaluate", "--data", str(csv), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "2 problem(s)" in result.output and "missing file" in result.output and "'Tabby'" in result.output
    assert "Traceback" not in result.output

    ann = tmp_path / "ox"
    (ann / "annotations").mkdir(parents=True)
    (ann / "images").mkdir()
    (ann / "annotations" / "test.txt").write_text("nowhere_1 6 1 2\n")
    with pytest.raises(CatScannerError, match="nowhere_1: no such photo"):
        read_photo_set(ann, "test")


def test_breed_ids_decide_not_the_file_name(tmp_path, sample):
    """A photo named like a Persian but annotated BREED-ID 2 (Bengal) is a Bengal."""
    root = tmp_path / "pets"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    shutil.copy(sample[0].path, root / "images" / "Persian_1.jpg")
    (root / "annotations" / "test.txt").write_text("Persian_1 6 1 2\n")
    (item,) = read_split(root, "test")
    assert item.breed == "Bengal" == BREEDS[1] and item.label == 1


def _mini_data(root: Path, oxford_dir: Path, coco_dir: Path, cats: int, dogs: int, coco_free: int) -> Path:
    """A data folder in the shared layout holding a slice of the real photos: ``cats`` and ``dogs``
    Oxford test photos (and as many trainval ones), the COCO photos with a cat and ``coco_free`` without."""
    pets = root / "oxford-iiit-pet"
    (pets / "images").mkdir(parents=True)
    (pets / "annotations").mkdir()
    for split in ("trainval", "test"):
        lines = [ln for ln in (oxford_dir / "annotations" / f"{split}.txt").read_text().splitlines()
                 if ln and not ln.startswith("#")]
        chosen = [ln for ln in lines if ln.split()[2] == "1"][::37][:cats] + \
                 [ln for ln in lines if ln.split()[2] == "2"][::11][:dogs]
        for ln in chosen:
            name = ln.split()[0]
            src = next((oxford_dir / "images").glob(f"{name}.*"))
            shutil.copy(src, pets / "images" / src.name)
        (pets / "annotations" / f"{split}.txt").write_text("\n".join(chosen) + "\n")
    for part in ("images", "labels"):
        (root / "coco128" / part / "train").mkdir(parents=True)
    labelled = {p.stem for p in (coco_dir / "labels" / "train").iterdir()
                if any(r.split()[:1] == ["15"] for r in p.read_text().splitlines())}
    free = [p for p in sorted((coco_dir / "images" / "train").iterdir()) if p.stem not in labelled]
    for img in [p for p in sorted((coco_dir / "images" / "train").iterdir()) if p.stem in labelled] + free[:coco_free]:
        shutil.copy(img, root / "coco128" / "images" / "train" / img.name)
        label = coco_dir / "labels" / "train" / f"{img.stem}.txt"
        if label.exists():
            shutil.copy(label, root / "coco128" / "labels" / "train" / label.name)
    return root


def test_evaluate_detector_end_to_end_with_intervals(tmp_path, oxford_dir, data_dir):
    """``catscan evaluate-detector`` on a slice of the shared data: every set is scanned and counted,
    the headline rates carry 95 % intervals that hold them, the reliability diagram is drawn."""
    root = _mini_data(tmp_path / "data", oxford_dir, data_dir / "coco128", cats=12, dogs=6, coco_free=8)
    out = tmp_path / "report"
    result = runner.invoke(app, ["evaluate-detector", "--data", str(root), "--scenes", "6", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout[result.stdout.index("{"):])
    sets = r["sets"]
    assert sets["Oxford test cats"]["photos"] == 12 and sets["Oxford test dogs"]["photos"] == 6
    assert sets["report scenes"]["photos"] == 6
    assert sets["COCO without a cat (report half)"]["photos"] == 4  # the odd half of 8
    s = r["summary"]
    assert s["negatives"] == 6 + 4
    assert s["oxford_test_cat_recall"] >= 11 / 12  # real cats, the shipped detector
    assert s["false_alarms"] <= 1
    for key, rate in (("false_alarm_rate", s["false_alarm_rate"]), ("oxford_test_cat_recall", s["oxford_test_cat_recall"]),
                      ("scene_photos_with_cat_called_cat", s["scene_photos_with_cat_called_cat"])):
        lo, hi = s["intervals_95"][key]
        assert 0 <= lo <= rate <= hi <= 1 and hi - lo > 0.05, (key, lo, rate, hi)  # a dozen photos: a wide interval
    assert len(r["localization"]) == 4  # the four COCO photos with a cat
    assert json.loads((out / "detector_metrics.json").read_text())["summary"] == s
    assert (out / "reliability.png").stat().st_size > 10_000


@pytest.mark.parametrize("command", ["evaluate", "evaluate-detector"])
def test_evaluating_without_the_training_extra_says_what_to_install(command, monkeypatch, tmp_path):
    """A plain install has no SciPy, scikit-learn or matplotlib: a usage error naming the extra, not
    an ImportError traceback."""
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)  # import fails as if not installed
    result = runner.invoke(app, [command, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "needs scipy" in result.output and "catscanner[train]" in result.output


def test_photo_sets_as_spreadsheets_and_photo_folders_save_them(tmp_path, sample):
    """A CSV saved by Excel ("CSV UTF-8": a byte-order mark) was refused as having no 'path,breed'
    header; a Latin-1 file name ended in a traceback; a folder per breed ignored its sub-folders
    (support 0, silently) and read macOS ``._`` files as photos."""
    folders = tmp_path / "by_breed"
    for i, it in enumerate(sample):
        where = folders / it.breed / ("2023" if i % 2 else "")
        where.mkdir(parents=True, exist_ok=True)
        shutil.copy(it.path, where / f"{it.name}.jpg")
    (folders / "Bengal" / "._Bengal_1.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert len(read_photo_set(folders)) == 24
    odd = tmp_path / "csv" / "Ragdoll caf\xe9.jpg".encode("latin-1").decode("utf-8", "surrogateescape")
    odd.parent.mkdir()
    shutil.copy(sample[0].path, odd)
    rows = "path,breed\n" + f"{odd.name},{sample[0].breed}\n"
    (tmp_path / "csv" / "excel.csv").write_bytes(b"\xef\xbb\xbf" + rows.encode("utf-8", "surrogateescape"))
    items = read_photo_set(tmp_path / "csv" / "excel.csv")
    assert [(it.path, it.breed) for it in items] == [(odd, sample[0].breed)]


def test_a_photo_that_cannot_be_read_is_named(tmp_path, sample):
    """One broken photo stopped the whole evaluation with "The input (6 bytes) is not an image format"
    and no word of which photo it was."""
    folder = tmp_path / "by_breed" / sample[0].breed
    folder.mkdir(parents=True)
    shutil.copy(sample[0].path, folder / "good.jpg")
    (folder / "broken.jpg").write_bytes(b"hello!")
    result = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "by_breed"), "--out", str(tmp_path / "r")])
    text = "".join(result.output.split())
    assert result.exit_code == 2 and "broken.jpg" in text and "notanimage" in text, result.output


def test_a_spreadsheet_report_does_not_overwrite_the_test_report(tmp_path, sample):
    """``evaluate --data photos.csv`` saved its report as breed_metrics_test.json, over the Oxford test
    report in the same --out; it is now named after the photo set."""
    rows = "path,breed\n" + "".join(f"{it.path},{it.breed}\n" for it in sample[:6])
    (tmp_path / "shelter.csv").write_text(rows)
    result = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "shelter.csv"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["breed_metrics_shelter.json", "confusion_matrix_shelter.png"]
    assert json.loads((tmp_path / "r" / "breed_metrics_shelter.json").read_text())["n"] == 6
