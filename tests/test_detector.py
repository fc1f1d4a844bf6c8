"""The shipped cat detector on real photos: cats found, dogs and street scenes not, cats located."""

from __future__ import annotations

from pathlib import Path

from catscanner.training.data import read_coco, read_split


def _coco(data_dir: Path) -> tuple[list[Path], list[tuple[Path, list]]]:
    photos = read_coco(data_dir / "coco128")
    return [p.path for p in photos if not p.cat_boxes], [(p.path, p.cat_boxes) for p in photos if p.cat_boxes]


def test_detector_finds_cats_of_every_breed(scanner, oxford_dir):
    cats = read_split(oxford_dir, "test")
    sample = [it for label in range(12) for it in [c for c in cats if c.label == label][:5]]  # 60 photos
    results = list(scanner.scan_many([it.path for it in sample]))
    found = [r.is_cat for r in results]
    assert sum(found) >= 58, [it.name for it, f in zip(sample, found) if not f]
    for r in results:
        assert r.ok and 0.0 <= r.cat_probability <= 1.0
        assert (r.cat_probability >= scanner.detector.threshold) == r.is_cat
        if r.is_cat:
            b = r.box
            assert 0 <= b.left < b.right <= r.width and 0 <= b.top < b.bottom <= r.height
    # the labels the decision came from are real ImageNet classes, most probable first
    probs = [label.probability for label in results[0].imagenet_top]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True)


def test_detector_stays_quiet_on_dogs_and_street_scenes(scanner, oxford_dir, data_dir):
    dogs = [it.path for it in read_split(oxford_dir, "test", species="dog")[::3]]  # 42 dogs
    no_cat, _ = _coco(data_dir)
    results = list(scanner.scan_many(dogs + no_cat[::2]))  # + 62 COCO photos without a cat
    false_alarms = [r.path for r in results if r.is_cat]
    assert len(false_alarms) <= 1, false_alarms
    assert all(not r.breeds and "No cat detected" in r.breeds_note for r in results if not r.is_cat)


def test_reference_rule_misses_more_cats_than_the_fitted_rule(scanner, oxford_dir):
    sphynx = [it.path for it in read_split(oxford_dir, "test") if it.breed == "Sphynx"][:20]
    results = list(scanner.scan_many(sphynx))
    assert sum(r.is_cat for r in results) >= 19
    assert sum(r.reference_rule_cat for r in results) < sum(r.is_cat for r in results)


def test_cat_box_overlaps_the_labelled_cat_in_coco(scanner, data_dir):
    no_cat, with_cat = _coco(data_dir)
    assert len(with_cat) == 4 and len(no_cat) == 124  # the COCO loader reads class 15 = cat
    hits = 0
    for img, cats in with_cat:
        r = scanner.scan(img)
        if not r.box:
            continue
        W, H = r.width, r.height
        for x, y, w, h in cats:
            cx, cy = (r.box.left + r.box.right) / 2, (r.box.top + r.box.bottom) / 2
            if abs(cx - x * W) <= w * W / 2 and abs(cy - y * H) <= h * H / 2:  # box centre on the cat
                hits += 1
                break
    assert hits >= 3
