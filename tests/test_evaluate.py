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
