"""The shipped whole-frame cat detector on real photos: every cat found anywhere in photos of every
shape, one box and one breed mix per cat; dogs and street scenes left alone; wild cats not called
house cats."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catscanner.runtime.breeds import BREEDS
from catscanner.runtime.contract import Output
from catscanner.runtime.detector import CatDetector, candidates
from catscanner.runtime.decoding import load_image
from catscanner.runtime.preprocessing import preprocess_frame
from catscanner.training.data import read_coco, read_split


def _coco(data_dir: Path) -> tuple[list[Path], list[tuple[Path, list]]]:
    photos = read_coco(data_dir / "coco128")
    return [p.path for p in photos if not p.cat_boxes], [(p.path, p.cat_boxes) for p in photos if p.cat_boxes]


def _inside(r, box) -> bool:
    return 0 <= box.left < box.right <= r.width and 0 <= box.top < box.bottom <= r.height


def _finds(box, true) -> bool:
    """The evaluation's rule: the box's centre lies in the cat and at least half the box lies inside it."""
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    if not (true[0] <= cx <= true[2] and true[1] <= cy <= true[3]):
        return False
    iw = max(0, min(box.right, true[2]) - max(box.left, true[0]))
    ih = max(0, min(box.bottom, true[3]) - max(box.top, true[1]))
    return iw * ih >= 0.5 * (box.right - box.left) * (box.bottom - box.top)


def _paste(background: Path, size: tuple[int, int], cats: list[tuple[Path, tuple[int, int, int, int]]]) -> Image.Image:
    """A real COCO street photo of ``size`` with real Oxford cat photos pasted into the given boxes."""
    scene = load_image(background).resize(size, Image.Resampling.BILINEAR)
    for path, (l, t, r, b) in cats:
        scene.paste(load_image(path).resize((r - l, b - t), Image.Resampling.BILINEAR), (l, t))
    return scene


@pytest.fixture(scope="module")
def test_cats(oxford_dir):
    cats = read_split(oxford_dir, "test")
    return {label: [c for c in cats if c.label == label] for label in range(len(BREEDS))}


@pytest.fixture(scope="module")
def street(data_dir):
    return _coco(data_dir)[0][1]  # a cat-free COCO photo (odd index: the half never used in fitting)


def test_finds_cats_of_every_breed(scanner, test_cats):
    sample = [c for label in range(12) for c in test_cats[label][:5]]  # 60 photos, 5 per breed
    results = list(scanner.scan_many([c.path for c in sample]))
    found = [r.is_cat for r in results]
    assert sum(found) >= 59, [c.name for c, f in zip(sample, found) if not f]
    for r in results:
        assert r.ok and 0.0 <= r.cat_probability <= 1.0 and r.wild_cat is None
        if r.is_cat:
            assert r.cats and r.box == r.cats[0].box and r.breeds == r.cats[0].breeds
            assert all(_inside(r, c.box) for c in r.cats)
            probs = [c.cat_probability for c in r.cats]
            assert probs == sorted(probs, reverse=True) and r.cat_probability == probs[0]
    right = sum(r.top_breed is not None and r.top_breed.breed == c.breed for c, r in zip(sample, results))
    assert right >= 50  # the breed mix is computed on the cat's own crop: still ~0.9 right


def test_several_cats_in_one_photo_get_a_box_and_a_breed_mix_each(scanner, data_dir):
    """The first 12 report scenes with two or three cats (Oxford test cats pasted into report-half COCO
    photos; never fitted on). Measured with v0.6: 27 of their 31 cats found, 11 photos with two or more
    found, every found cat's top breed right (the shipped breed model learned from these cats); v0.5 22
    and 8."""
    from catscanner.training.scenes import Pools, make_scene

    pools = Pools("report", data_dir)
    scenes = [s for s in (make_scene(pools, i) for i in range(40)) if len(s.cats) >= 2][:12]
    cats = found = right = several = 0
    for scene in scenes:
        r = scanner.scan(scene.image)
        assert r.is_cat == bool(r.cats) and len(r.cats) <= 3
        for c in r.cats:  # each box is one cat's: it finds at most one of them
            assert sum(_finds(c.box, t.box) for t in scene.cats) <= 1, (scene.key, c.box)
            assert c.breeds and all(b.percent >= 5 for b in c.breeds) and sum(b.percent for b in c.breeds) <= 100.5
        mine = [[c for c in r.cats if _finds(c.box, t.box)] for t in scene.cats]
        assert all(len(m) <= 1 for m in mine), scene.key  # no cat gets two boxes
        cats += len(scene.cats)
        found += sum(bool(m) for m in mine)
        right += sum(bool(m) and m[0].breeds[0].breed == BREEDS[t.label] for m, t in zip(mine, scene.cats))
        several += sum(bool(m) for m in mine) >= 2
    assert cats == 31 and found >= 24 and several >= 9, (found, several)
    assert right >= 0.85 * found


def test_two_cats_in_one_photo_get_a_box_and_a_breed_mix_each(scanner, test_cats, street):
    """A Persian and a Sphynx pasted side by side into a street photo. v0.5 (a strict xfail then) found
    only the Persian: the Sphynx's box (ImageNet calls Sphynx cats Mexican hairless) scored 0.73,
    under its 0.75 box threshold; v0.6 finds both."""
    persian, sphynx = test_cats[BREEDS.index("Persian")][3].path, test_cats[BREEDS.index("Sphynx")][3].path
    boxes = [(60, 300, 560, 675), (900, 250, 1380, 610)]
    r = scanner.scan(_paste(street, (1600, 900), [(persian, boxes[0]), (sphynx, boxes[1])]))
    assert r.is_cat and len(r.cats) == 2, r.cats
    assert (r.width, r.height) == (1600, 900)
    for true, breed in zip(boxes, ("Persian", "Sphynx")):
        mine = [c for c in r.cats if _finds(c.box, true)]
        assert len(mine) == 1, (true, r.cats)
        assert mine[0].breeds[0].breed == breed and mine[0].breeds[0].percent >= 50
        assert all(b.percent >= 5 for b in mine[0].breeds)


PANORAMA_CAT = (2550, 150, 3000, 950)  # the right end of a 3:1 panorama, 80 % of its height


@pytest.fixture(scope="module")
def panorama(scanner, test_cats, street):
    """A Maine Coon pasted at the right end of a 3:1 panorama made of a report-half COCO photo (a
    giraffe by a tree), scanned."""
    cat = test_cats[BREEDS.index("Maine Coon")][2].path
    return scanner.scan(_paste(street, (3000, 1000), [(cat, PANORAMA_CAT)]))


def test_cat_at_the_edge_of_a_panorama(panorama):
    r = panorama
    assert r.is_cat and _finds(r.cats[0].box, PANORAMA_CAT), r.cats  # the most confident box is the cat's
    assert sum(_finds(c.box, PANORAMA_CAT) for c in r.cats) == 1 and r.breeds[0].breed == "Maine Coon", r.cats


@pytest.mark.xfail(strict=True, reason="v0.10 also boxes the squeezed giraffe's body beside the cat as a "
                   "house cat (0.78; v0.9 0.26): its crop's ImageNet classes are jaguar, gazelle, lynx")
def test_no_box_on_the_giraffe_beside_the_panorama_cat(panorama):
    """The background of the panorama holds a giraffe, whose coat ImageNet calls jaguar or leopard:
    no box of its own. A known failure of v0.10 (one extra box on a report-side photo; report scenes'
    extra boxes per photo fell from 0.080 to 0.069): strict, so it fails the day it is fixed."""
    assert len(panorama.cats) == 1, panorama.cats


def test_portrait_photo_with_the_cat_at_the_top(scanner, test_cats, street):
    cat = test_cats[BREEDS.index("Bombay")][4].path
    box = (200, 40, 820, 505)  # upper part of a 9:16 phone photo
    r = scanner.scan(_paste(street, (1080, 1920), [(cat, box)]))
    assert r.is_cat and len(r.cats) == 1 and _finds(r.cats[0].box, box), r.cats
    assert r.breeds[0].breed == "Bombay"


def test_quiet_on_dogs_and_street_scenes(scanner, oxford_dir, data_dir):
    dogs = [it.path for it in read_split(oxford_dir, "test", species="dog")[::3]]  # 42 dogs
    no_cat, _ = _coco(data_dir)
    results = list(scanner.scan_many(dogs + no_cat[1::2]))  # + the 62 cat-free COCO photos never fitted on
    false_alarms = [r.path for r in results if r.is_cat]
    # measured on all 187 unseen test dogs and cat-free COCO photos: v0.10 3 false alarms (1.6 %; all 3 among
    # these 104: a Japanese chin, the giraffe photo 000000000025 and the street photo 000000000581), v0.9 6
    # (4 of these: the chin, a keeshond, two street photos), v0.8 2, v0.6 4; the goal is <= 1 %. The giraffe
    # photo (ImageNet: leopard) once came out as "wild cat: leopard" from the whole photo's classes
    assert len(false_alarms) <= 3, false_alarms
    assert all(not r.cats and not r.breeds and "No cat detected" in r.breeds_note for r in results if not r.is_cat)


@pytest.mark.xfail(strict=True, reason="a photo on its side splits a cat into head and body more often (FINDINGS: "
                   "'Cats on their side, second try'); strict, so it fails the day it is fixed")
def test_a_cat_photographed_sideways_is_one_cat(scanner, test_cats):
    """The 60 test cats of ``test_finds_cats_of_every_breed`` turned by 90 and 270 degrees (a photo whose
    EXIF orientation is missing): no more photos with several cats than upright (3 of these 60 upright;
    v0.10 turned: 11 of 120; all 2,088 turned test cats: 229, T's fit 36)."""
    sample = [c for label in range(12) for c in test_cats[label][:5]]
    photos = [Image.open(c.path).convert("RGB") for c in sample]
    results = list(scanner.scan_many([p.rotate(turn, expand=True) for turn in (90, 270) for p in photos]))
    assert sum(r.is_cat for r in results) >= 114
    several = [r for r in results if len(r.cats) > 1]
    assert len(several) <= 3, len(several)


@pytest.mark.xfail(strict=True, reason="a dog photo on its side is called a cat 13-19 % of the time, 1 of 125 upright "
                   "(FINDINGS: 'Cats on their side, second try'); strict, so it fails the day it is fixed")
def test_a_dog_photographed_sideways_is_no_cat(scanner, oxford_dir):
    """The 42 test dogs of ``test_quiet_on_dogs_and_street_scenes`` turned by 90 and 270 degrees: as few
    false alarms as upright (at most 2 of 84; v0.10 9: 7 at 90, 2 at 270)."""
    dogs = [Image.open(it.path).convert("RGB") for it in read_split(oxford_dir, "test", species="dog")[::3]]
    results = list(scanner.scan_many([d.rotate(turn, expand=True) for turn in (90, 270) for d in dogs]))
    assert sum(r.is_cat for r in results) <= 2


def test_reference_rule_misses_more_cats_than_the_detector(scanner, test_cats):
    sphynx = [c.path for c in test_cats[BREEDS.index("Sphynx")][:20]]  # ImageNet calls them Mexican hairless
    results = list(scanner.scan_many(sphynx))
    assert sum(r.is_cat for r in results) >= 19
    assert sum(r.reference_rule_cat for r in results) < sum(r.is_cat for r in results)


def test_box_lies_on_the_labelled_cat_in_coco(scanner, data_dir):
    _, with_cat = _coco(data_dir)
    hits = 0
    for img, cats in with_cat:
        r = scanner.scan(img)
        W, H = r.width, r.height
        truth = [((x - w / 2) * W, (y - h / 2) * H, (x + w / 2) * W, (y + h / 2) * H) for x, y, w, h in cats]
        hits += any(_finds(c.box, t) or (t[0] <= (c.box.left + c.box.right) / 2 <= t[2]
                                         and t[1] <= (c.box.top + c.box.bottom) / 2 <= t[3])
                    for c in r.cats for t in truth)
    assert hits >= 3


class _Leopard:
    """The real model, with ImageNet's "leopard" (class 288) pushed up in its answers for the
    whole photo, for every cell and for every crop the detector looks at again: what a leopard
    photo gives."""

    def __init__(self, model, push: float = 30.0, heat_peak: float | None = None):
        self.model, self.meta, self.path, self.preprocess = model, model.meta, model.path, model.preprocess
        self.push, self.heat_peak = push, heat_peak

    def run(self, batch):
        out = dict(self.model.run(batch))
        for key in (Output.IMAGENET_LOGITS, Output.IMAGENET_MAP):
            out[key] = out[key].copy()
            out[key][:, 288] += self.push
        if self.heat_peak is not None:  # the head sees no cat's centre: each heat map peaks at heat_peak
            heat = out[Output.CAT_HEATMAP]
            out[Output.CAT_HEATMAP] = heat * (self.heat_peak / heat.max(axis=(1, 2, 3), keepdims=True))
        return out


def test_a_looked_at_box_is_wild_only_where_the_head_sees_a_cat(scanner, test_cats):
    """ImageNet calls a giraffe's coat leopard; the head sees no cat's centre in it. Bengal photos
    with ImageNet pushed to "leopard" give wild boxes; the same crops with their heat maps turned
    down under ``wild_min_peak`` (what the head gives a giraffe) give none. Every box is cut out here
    (``look_reuse`` 0); a box that reuses the first pass reads the first pass's heat map, which the
    next test holds under the bar."""
    from dataclasses import replace

    det: CatDetector = scanner.detector
    bar = det.params.wild_min_peak
    params = replace(det.params, look_reuse=0.0)
    leopard = CatDetector(_Leopard(det.model))
    for photo in [c.path for c in test_cats[BREEDS.index("Bengal")][:3]]:
        img = load_image(photo)
        x = preprocess_frame(img, det.preprocess)[None]
        out, scale = leopard.model.run(x), (img.width / x.shape[3], img.height / x.shape[2])
        look = leopard._looker(img, img.size)

        def faint(boxes):
            crops = dict(look(boxes))
            heat = crops[Output.CAT_HEATMAP]
            crops[Output.CAT_HEATMAP] = heat * (0.5 * bar / heat.max())
            return crops

        assert any(c.wild_cat == "leopard" for c in candidates(out, 0, params, scale, look)), photo
        found = candidates(out, 0, params, scale, faint)
        assert found and all(c.wild_cat is None for c in found), (photo, found)


def test_a_photo_is_wild_only_where_the_head_sees_a_cat(scanner, test_cats):
    """A report-side COCO giraffe photo (ImageNet: leopard with most of its mass; the head's heat map
    peaks at 0.15 there) was named a leopard by the whole-photo rule. Bengal photos with ImageNet
    pushed to "leopard" and every heat map (first pass and crops) held under ``wild_min_peak``: no
    house cat and no wild cat."""
    det: CatDetector = scanner.detector
    faint = CatDetector(_Leopard(det.model, heat_peak=0.5 * det.params.wild_min_peak))
    for photo in [c.path for c in test_cats[BREEDS.index("Bengal")][:3]]:
        img = load_image(photo)
        x = preprocess_frame(img, det.preprocess)[None]
        (r,) = faint(x, [img.size], [img])
        assert not r.cats and r.wild_cat is None, (photo, r.cats, r.wild_cat)


def test_the_drawn_verdict_band_leaves_every_cat_in_view(scanner, data_dir):
    """Report scene 7 (2:1, never fitted on): a cat near the bottom-left corner, where ``--annotate``
    drew its verdict band over it; the band now goes to the corner that hides least of the boxes."""
    from catscanner.runtime.annotate import annotate
    from catscanner.training.scenes import Pools, make_scene

    scene = make_scene(Pools("report", data_dir), 7)
    r = scanner.scan(scene.image)
    assert len(r.cats) == 2, r.cats
    before = np.asarray(scene.image.convert("RGB"), dtype=np.int16)
    after = np.asarray(annotate(scene.image, r), dtype=np.int16)
    changed = np.abs(after - before).max(axis=2) > 0
    m = 12  # inside the outline (7 px wide on this photo); the lower half (a box at the top edge has its label inside)
    for c in r.cats:
        inside = changed[(c.box.top + c.box.bottom) // 2:c.box.bottom - m, c.box.left + m:c.box.right - m]
        assert inside.mean() < 0.02, (c.box, inside.mean())
    assert changed.mean() > 0.02  # the boxes, labels and band were drawn


@pytest.mark.parametrize("push", [16.0, 30.0])
def test_a_wild_cat_is_named_and_not_called_a_house_cat(scanner, test_cats, push):
    """The shared data holds no wild-cat photo, so real Bengal photos go through the real detector
    whose ImageNet answers are pushed to "leopard", as a leopard photo gives: no house cat, no
    breeds, wild_cat "leopard". At +16 the looked-at boxes once stayed under the house-cat
    threshold and the whole-photo rule called 4 of these 6 photos house cats."""
    det: CatDetector = scanner.detector
    for photo in [c.path for c in test_cats[BREEDS.index("Bengal")][:6]]:
        img = load_image(photo)
        x = preprocess_frame(img, det.preprocess)[None]
        (house,) = det(x, [img.size], [img])
        assert house.cats and house.wild_cat is None, photo
        (wild,) = CatDetector(_Leopard(det.model, push))(x, [img.size], [img])
        assert not wild.cats and wild.wild_cat == "leopard", (photo, wild.cats)

    as_wild = copy.copy(scanner)
    as_wild.detector = CatDetector(_Leopard(det.model, push))
    r = as_wild.scan(photo)
    assert not r.is_cat and r.wild_cat == "leopard" and not r.breeds and not r.cats
    assert "wild cat" in r.breeds_note


def test_a_photo_with_nothing_to_look_at_gets_the_measured_share_not_zero(scanner):
    """A plain grey photo gives no candidate box: its cat_probability is the share of such photos
    that held a cat on the fit side (small cats the first pass missed), not a confident 0."""
    r = scanner.scan(Image.new("RGB", (640, 480), (128, 128, 128)))
    share = scanner.detector.params.look_none_probability
    assert not r.is_cat and not r.cats and r.wild_cat is None
    assert 0.0 < share < 0.5 and r.cat_probability == round(share, 4)


def test_second_look_needs_the_photo(scanner, test_cats):
    det: CatDetector = scanner.detector
    img = load_image(test_cats[0][0].path)
    with pytest.raises(ValueError, match="pass the decoded photos"):
        det(preprocess_frame(img, det.preprocess)[None], [img.size])


def test_examine_gives_the_boxes_and_crops_the_detector_decides_on(scanner, test_cats):
    """``CatDetector.examine`` (for measuring) sees what a scan sees: the scan's cats are its most
    probable candidates, and there is one crop output per candidate cut out (not reusing the first pass)."""
    from catscanner.runtime.detector import look_share

    det: CatDetector = scanner.detector
    for photo in [c.path for c in test_cats[BREEDS.index("Birman")][:3]]:
        img = load_image(photo)
        found, crops = det.examine(img)
        cut = sum(not (det.params.look_reuse and look_share(c.box, img.size, det.params.look_margin) >= det.params.look_reuse)
                  for c in found)
        assert (0 if crops is None else len(crops[Output.IMAGENET_LOGITS])) == cut
        (d,) = det(preprocess_frame(img, det.preprocess)[None], [img.size], [img])
        assert d.cats and [c.box for c in d.cats] == [c.box for c in found[: len(d.cats)]]


def test_a_box_whose_crop_covers_most_of_the_photo_reuses_the_first_pass(scanner, test_cats, street):
    """``look_reuse``: a looked-at box whose crop would cover at least that share of the photo is not
    cut out and run again; the first pass's whole-photo logits and heat-map peak stand in for its
    crop's. A cat that fills an Oxford photo costs no second run of the graph; a small cat pasted
    into a street photo still gets its crop; with ``look_reuse`` 0 every box is cut out."""
    from dataclasses import replace

    from catscanner.runtime.detector import look_evidence, look_share

    assert look_share((0, 0, 100, 100), (100, 100), 1.15) == 1.0  # the crop sticks out: clipped to the photo
    assert abs(look_share((40, 40, 60, 60), (100, 100), 1.0) - 0.04) < 1e-12
    assert abs(look_share((0, 40, 20, 60), (100, 50), 1.0) - 20 * 10 / 5000) < 1e-12  # only the part inside counts
    det: CatDetector = scanner.detector
    cat = test_cats[BREEDS.index("Birman")][0].path
    photos = {"fills": load_image(cat), "small": _paste(street, (1600, 900), [(cat, (100, 100, 400, 400))])}
    for reuse in (0.0, 0.5, det.params.look_reuse):  # the shipped one: 1/3 since v0.9
        params = replace(det.params, look_reuse=reuse)
        for name, img in photos.items():
            x = preprocess_frame(img, det.preprocess)[None]
            out = det.model.run(x)
            runs: list[int] = []
            look = det._looker(img, img.size)
            found = candidates(out, 0, params, (img.width / x.shape[3], img.height / x.shape[2]),
                               lambda b: runs.append(len(b)) or look(b))
            assert found, (name, reuse)
            shares = [look_share(c.box, img.size, params.look_margin) for c in found]
            if name == "fills":
                assert max(shares) >= 0.5
            else:
                assert max(shares) < 0.5 and runs == [len(found)]
            assert sum(runs) == (len(found) if reuse == 0 else sum(s < reuse for s in shares)), (name, reuse, runs)
        # what the reused box's score reads: the first pass's outputs on the whole photo, exactly
        img = photos["fills"]
        out = det.model.run(preprocess_frame(img, det.preprocess)[None])
        box = np.array([[0.0, 0.0, img.width, img.height]])
        logits, peaks = look_evidence(out, 0, box, img.size, replace(det.params, look_reuse=0.5), None)
        assert np.array_equal(logits[0], out[Output.IMAGENET_LOGITS][0]) and peaks[0] == out[Output.CAT_HEATMAP][0].max()
