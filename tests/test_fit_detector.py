"""``catscan fit-detector`` end to end on a small slice of the fit data: features, head training,
score and thresholds on held-out cats, the refit on every photo, and an exported detector that the
scanner loads and runs on a real photo."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

try:
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - the README's test command installs it
    pytest.fail("test_fit_detector.py needs PyTorch: pip install torch==2.13.0 -e '.[train,test]'", pytrace=False)

from catscanner.runtime.contract import ModelFiles, Output
from catscanner.runtime.decoding import load_image
from catscanner.runtime.preprocessing import frame_size, preprocess_frame
from catscanner.runtime.scanner import Scanner
from catscanner.training.fit_detector import fit_detector


def test_fit_detector_exports_a_detector_the_scanner_runs(data_dir, cat_photo, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ModelFiles.resolve(None).breeds, models / "breeds.onnx")
    report = fit_detector(data_dir, models / "detector.onnx", n_scenes=40, epochs=4, threads=2,
                          refit_all=True, max_photos=30, cache=tmp_path / "cache",
                          box_classifier=True, dropout=0.1, first_head=tmp_path / "first" / "detector.onnx", heads=1)
    assert report["refit_all"] is True and report["fit_photos"] > 30
    assert len(list((tmp_path / "cache").glob("features_fit_40_*.pkl"))) == 1  # features kept for later runs
    assert report["box_classifier"]["candidates"] > report["box_classifier"]["finding_a_cat"] > 0
    assert report["held_out_photos"] > 0 and report["candidates"] > 0
    assert isinstance(report["false_alarm_budget_met"], bool)
    lo, hi = report["thresholds"]
    assert 0.0 < hi <= lo < 1.0

    scanner = Scanner(models, threads=1)
    meta = scanner.detector.model.meta
    assert meta.details["fit"]["refit_all"] is True and meta.details["head"]["mid"] > 0
    assert meta.details["head"]["dropout"] == 0.1 == meta.details["fit"]["dropout"]
    assert np.isfinite(meta.detection.coef).all() and len(meta.detection.coef) == 6
    assert len(meta.detection.box_classifier) == 1000 and np.isfinite(meta.detection.box_classifier).all()
    # the second look (on by default): settings and its 6 + 5 weights travel in the file
    d = meta.detection
    assert (d.look_size, d.look_count, d.look_floor, d.look_reuse) == (192, 3, 0.1, 0.3333) and report["looked_at"] > 0
    assert len(d.look_coef) == 11 and np.isfinite(d.look_coef).all()
    assert 0.0 <= d.look_none_probability <= 1.0 and report["photos_with_nothing_looked_at"] >= 0
    for out in onnx.load(str(models / "detector.onnx")).graph.output:  # every declared dimension as it is at run time
        dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        assert dims[0] == "batch" and "batch" not in dims[1:], (out.name, dims)
    result = scanner.scan(cat_photo)  # a head trained briefly on a few photos: it must run, not be good
    assert result.error is None and 0.0 <= result.cat_probability <= 1.0
    json.dumps(result.to_dict())

    # the head the thresholds were chosen with, before the refit: fewer photos, same parameters, other weights
    shutil.copy(models / "breeds.onnx", tmp_path / "first" / "breeds.onnx")
    first = Scanner(tmp_path / "first", threads=1)
    fit_first = first.detector.model.meta.details["fit"]
    assert fit_first["refit_all"] is False and fit_first["held_out_photos"] == report["held_out_photos"]
    assert 0 < fit_first["fit_photos"] < report["fit_photos"] and fit_first["scenes"] == 40
    assert first.detector.params == d
    x = preprocess_frame(load_image(cat_photo), first.detector.preprocess)[None]
    heat_first, heat_refit = (s.detector.model.run(x)[Output.CAT_HEATMAP] for s in (first, scanner))
    assert heat_first.shape == heat_refit.shape and not np.allclose(heat_first, heat_refit)


def test_fit_detector_with_a_stride_8_head(data_dir, cat_photo, tmp_path):
    """``--stride 8``: the head also reads the backbone's stride-8 features; the exported heat map,
    the stored parameters and the scanner's boxes follow that stride. ``run_pixels``: the head trains
    on 50,000-pixel features, the thresholds are chosen on the held-out photos at 75,000, and the file
    says so: the runtime's first pass is that size."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ModelFiles.resolve(None).breeds, models / "breeds.onnx")
    report = fit_detector(data_dir, models / "detector.onnx", n_scenes=40, epochs=4, threads=2,
                          refit_all=False, max_photos=30, stride=8, box_classifier=True, run_pixels=75_000, heads=1)
    assert report["stride"] == 8 and report["box_classifier"]["candidates"] > 0
    assert (report["max_pixels"], report["run_pixels"]) == (50_000, 75_000)
    scanner = Scanner(models, threads=1)
    det = scanner.detector
    assert det.params.stride == 8 and det.model.meta.details["head"]["stride"] == 8
    assert det.preprocess.max_pixels == 75_000
    img = load_image(cat_photo)
    x = preprocess_frame(img, det.preprocess)[None]
    assert (x.shape[3], x.shape[2]) == frame_size(*img.size, 75_000) != frame_size(*img.size, 50_000)
    heat = det.model.run(x)[Output.CAT_HEATMAP]
    assert heat.shape[2:] == (x.shape[2] // 8, x.shape[3] // 8)
    result = scanner.scan(cat_photo)
    assert result.error is None and 0.0 <= result.cat_probability <= 1.0
    for cat in result.cats:  # boxes in photo pixels, whatever the stride
        assert 0 <= cat.box.left < cat.box.right <= result.width and 0 <= cat.box.top < cat.box.bottom <= result.height


def test_detection_params_refuse_a_score_of_the_wrong_width():
    from catscanner.runtime.contract import DetectionParams

    with pytest.raises(ValueError, match="6 weights, the box score takes 5"):
        DetectionParams(stride=16, peak_threshold=0.05, coef=(0.0,) * 6, intercept=0.0,
                        cat_threshold=0.5, box_threshold=0.5)
    with pytest.raises(ValueError, match="not one per ImageNet class"):
        DetectionParams(stride=16, peak_threshold=0.05, coef=(0.0,) * 6, intercept=0.0,
                        cat_threshold=0.5, box_threshold=0.5, box_classifier=(0.0,) * 10)


def test_thresholds_keep_to_the_false_alarm_budget_or_else_to_the_fewest_false_alarms():
    from catscanner.training.fit_detector import pick_thresholds

    def row(thr, found, fa):
        return thr, thr, {"cats_found": found, "extra_boxes_per_photo": 0.0, "is_cat_on_cat_photos": found,
                          "false_alarm_photos": fa}

    within = [row(0.5, 0.9, 0.10), row(0.8, 0.7, 0.0), row(0.9, 0.6, 0.0)]
    assert pick_thresholds(within)[0] == 0.8 and pick_thresholds(within)[3] is True
    # no row within the budget: not the most cats at 30 % false alarms, but the fewest false alarms
    over = [row(0.5, 0.9, 0.30), row(0.8, 0.7, 0.05), row(0.9, 0.6, 0.02), row(0.95, 0.5, 0.02)]
    thr, _, summary, met = pick_thresholds(over)
    assert (thr, summary["false_alarm_photos"], met) == (0.9, 0.02, False)


def test_turned_dogs_turn_the_dogs_of_fit_scenes_and_nothing_else(data_dir):
    """``--turned-dogs``: the dog photos a fit scene uses (background, distractors) are turned on their
    side; scenes without a dog, and every scene at the default 0, are exactly as before."""
    from catscanner.training.scenes import Pools, make_scene

    with pytest.raises(ValueError, match="turned_dogs must be a share from 0 to 1"):
        Pools("fit", data_dir, turned_dogs=1.5)
    upright, turned = Pools("fit", data_dir), Pools("fit", data_dir, turned_dogs=1.0)
    dog_stems = {p.stem for p in upright.dogs}
    with_dogs = unchanged = 0
    for i in range(24):
        a, b = make_scene(upright, i), make_scene(turned, i)
        has_dog = bool(dog_stems & set(a.background)) or any(d.kind == "dog" for d in a.distractors)
        same = a.image.size == b.image.size and np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert not (has_dog and same), i  # (a scene may change without a dog in its record: one hidden under a cat)
        with_dogs, unchanged = with_dogs + has_dog, unchanged + same
        for d in b.distractors:  # a whole dog photo pasted on its side: the box has the turned photo's shape
            if d.kind == "dog":
                w, h = load_image(next(p for p in turned.dogs if p.stem == d.name)).size
                assert abs((d.box[2] - d.box[0]) / (d.box[3] - d.box[1]) - h / w) < 0.05, (i, d)
    assert with_dogs >= 5 and unchanged >= 3


def test_feature_cache_is_reused_for_the_same_inputs_only(data_dir, tmp_path, capsys):
    from catscanner.training.fit_detector import feature_records
    from catscanner.training.scenes import Pools

    pools = Pools("fit", data_dir)
    pools.cats, pools.dogs, pools.coco = pools.cats[:3], pools.dogs[:2], pools.coco[:2]
    first = feature_records(pools, 2, threads=1, seed=0, cache=tmp_path)
    files = list(tmp_path.glob("features_fit_2_*.pkl"))
    assert len(files) == 1 and "features read from" not in capsys.readouterr().out
    again = feature_records(pools, 2, threads=1, seed=0, cache=tmp_path)
    assert "features read from" in capsys.readouterr().out
    assert [r["key"] for r in again] == [r["key"] for r in first]
    assert all(np.array_equal(a["c5"], b["c5"]) for a, b in zip(again, first))
    feature_records(pools, 2, threads=1, seed=1, cache=tmp_path)  # other scenes: another file
    pools.cats = pools.cats[::-1]  # the same photos in another order make other scenes too
    feature_records(pools, 2, threads=1, seed=0, cache=tmp_path)
    assert len(list(tmp_path.glob("features_fit_2_*.pkl"))) == 3 and not list(tmp_path.glob("*.tmp"))


def test_features_follow_the_training_size_and_match_the_recomputed_ones(data_dir, tmp_path):
    """``--train-pixels``: the head's features come from photos resized as the runtime's first pass
    at that size, cached apart from other sizes; and ``records_at`` (the held-out photos recomputed
    at the run size) gives exactly the features a fit at that size would have cached."""
    from dataclasses import replace

    from catscanner.training.fit_detector import SPEC, feature_records, records_at
    from catscanner.training.scenes import Pools

    pools = Pools("fit", data_dir)
    pools.cats, pools.dogs, pools.coco = pools.cats[:3], pools.dogs[:2], pools.coco[:2]
    small = feature_records(pools, 2, threads=1, cache=tmp_path)
    large = feature_records(pools, 2, threads=1, cache=tmp_path, spec=replace(SPEC, max_pixels=75_000))
    assert len(list(tmp_path.glob("features_fit_2_*.pkl"))) == 2  # one file per size
    for a, b in zip(small, large):
        assert a["key"] == b["key"] and a["scene_size"] == b["scene_size"]
        assert a["in_size"] == frame_size(*a["scene_size"], 50_000) != b["in_size"] == frame_size(*b["scene_size"], 75_000)
        assert b["c5"].shape[1:] == (b["in_size"][1] // 32, b["in_size"][0] // 32)
    again = records_at(small, pools, replace(SPEC, max_pixels=75_000), threads=1)
    assert all(np.array_equal(a["c3"], b["c3"]) and a["in_size"] == b["in_size"] for a, b in zip(again, large))


def test_detector_metadata_without_a_box_classifier_or_second_look_reads_as_before():
    from dataclasses import asdict, replace

    from catscanner.errors import ModelError
    from catscanner.runtime.contract import DetectionParams, ModelFiles, ModelMeta
    from catscanner.runtime.engine import OrtModel

    shipped = OrtModel(ModelFiles.resolve(None).detector, threads=1).meta  # 5 weights, a second look
    assert shipped.detection.box_classifier is None and len(shipped.detection.coef) == 5
    assert shipped.detection.second_look and ModelMeta.from_json(shipped.to_json()).detection == shipped.detection
    older = json.loads(shipped.to_json())
    del older["detection"]["wild_min_peak"]  # files before the heat-map bar for wild cats: no bar
    assert ModelMeta.from_json(json.dumps(older)).detection.wild_min_peak == 0.0
    assert 0.0 < shipped.detection.wild_min_peak < 1.0
    del older["detection"]["look_reuse"]  # files before v0.7: every looked-at box is cut out
    assert ModelMeta.from_json(json.dumps(older)).detection.look_reuse == 0.0 < shipped.detection.look_reuse
    plain = replace(shipped.detection, look_size=0, look_count=0, look_floor=0.0, look_margin=1.15, look_coef=None,
                    look_intercept=0.0, look_none_probability=0.0, look_reuse=0.0)
    meta = ModelMeta(**{**shipped.__dict__, "detection": plain})
    raw = json.loads(meta.to_json())
    # older readers see the keys they know
    assert "box_classifier" not in raw["detection"] and not any(k.startswith("look_") for k in raw["detection"])
    assert ModelMeta.from_json(meta.to_json()).detection == meta.detection
    raw["detection"]["coef"] = [0.0] * 6  # six weights but no box classifier: refused, clearly
    with pytest.raises(ModelError, match="the box score takes 5 features"):
        ModelMeta.from_json(json.dumps(raw))
    with pytest.raises(ValueError, match="a second look needs"):
        replace(shipped.detection, look_coef=(0.0,) * 11)  # the score has 5 + 5 features
    with_classifier = DetectionParams(**{**asdict(meta.detection), "coef": (0.0,) * 6,
                                         "box_classifier": (0.0,) * 1000})
    restored = ModelMeta.from_json(ModelMeta(**{**meta.__dict__, "detection": with_classifier}).to_json())
    assert restored.detection == with_classifier


def test_scene_by_key_rebuilds_the_photo_a_record_came_from(data_dir):
    """The second look is fitted on crops of the held-out photos, rebuilt from their records' keys."""
    from catscanner.training.scenes import Pools, make_scene, plain_items, scene_by_key

    pools = Pools("fit", data_dir)
    for kind in ("cat", "dog", "coco", "turned_cat", "turned_dog"):
        first = next(iter(plain_items(pools, kind)))
        again = scene_by_key(pools, first.key)
        assert again.key == first.key and again.image.tobytes() == first.image.tobytes()
        assert [(c.box, c.label) for c in again.cats] == [(c.box, c.label) for c in first.cats]
    scene = make_scene(pools, 7, seed=3)
    again = scene_by_key(pools, scene.key)
    assert again.image.tobytes() == scene.image.tobytes() and [c.box for c in again.cats] == [c.box for c in scene.cats]
    with pytest.raises(KeyError):
        scene_by_key(pools, "report/0/7")


def test_turned_photos_are_the_photos_on_their_side_with_the_cat_boxed_whole(data_dir):
    """``--turned``: each cat and dog photo also turned by 90 or 270 degrees (by its name, both turns
    used), the cat's box the whole turned photo, and only with ``turned`` in the fit's records."""
    from catscanner.training.fit_detector import feature_records
    from catscanner.training.scenes import Pools, plain_items, turn_of

    pools = Pools("fit", data_dir)
    pools.cats, pools.dogs, pools.coco = pools.cats[:6], pools.dogs[:2], pools.coco[:1]
    for upright, turned in zip(plain_items(pools, "cat"), plain_items(pools, "turned_cat")):
        stem = upright.cats[0].name
        assert turned.image.size == upright.image.size[::-1]
        assert turned.image.tobytes() == upright.image.rotate(turn_of(stem), expand=True).tobytes()
        assert [c.box for c in turned.cats] == [(0, 0, *turned.image.size)] and turned.cats[0].name == stem
    assert {turn_of(c.cats[0].name) for c in plain_items(pools, "cat")} == {90, 270}
    assert all(not d.cats for d in plain_items(pools, "turned_dog"))
    plain = [r["key"] for r in feature_records(pools, 0, threads=1)]
    both = [r["key"] for r in feature_records(pools, 0, threads=1, turned=True)]
    assert both[:len(plain)] == plain and len(both) == len(plain) + 6 + 2
    assert all(k.startswith(("plain/turned_cat/", "plain/turned_dog/")) for k in both[len(plain):])


def test_fit_scenes_draw_backgrounds_from_dogs_and_coco_report_scenes_from_report_coco_only(data_dir):
    """A head learns the backgrounds it is trained on: fit scenes take them from the fit COCO half
    and the trainval dog photos (some two side by side); report scenes stay single report-half COCO
    photos, so their figures compare across detector versions."""
    from catscanner.training.scenes import Pools, make_scene

    fit, report = Pools("fit", data_dir), Pools("report", data_dir)
    fit_scenes = [make_scene(fit, i) for i in range(60)]
    used = [n for s in fit_scenes for n in s.background]
    assert set(used) <= {p.stem for p in fit.coco + fit.dogs}
    assert any(n in {p.stem for p in fit.dogs} for n in used) and any(n in {p.stem for p in fit.coco} for n in used)
    assert any(len(s.background) == 2 for s in fit_scenes) and any(len(s.background) == 1 for s in fit_scenes)
    report_coco = {p.stem for p in report.coco}
    for i in range(30):
        scene = make_scene(report, i)
        assert len(scene.background) == 1 and scene.background[0] in report_coco
    # the report scenes of every earlier detector version, drawn from the same random numbers
    # (boxes depend on nothing else; the values as the scenes were before fit backgrounds changed)
    before = {0: ((1283, 1283), [(566, 0, 806, 160)], [(819, 0, 1064, 216)], "000000000394"),
              1: ((889, 1580), [(725, 643, 889, 766)], [(92, 373, 683, 975), (264, 1168, 766, 1580)], "000000000136"),
              7: ((1181, 394), [(996, 8, 1181, 255), (278, 262, 342, 358)], [], "000000000081")}
    for i, (size, cats, distractors, background) in before.items():
        scene = make_scene(report, i)
        assert (scene.image.size, [c.box for c in scene.cats], [d.box for d in scene.distractors],
                scene.background[0]) == (size, cats, distractors, background), i


def test_a_head_reading_the_stride_8_features_starts_as_the_plain_head():
    """``--fine-input``: a stride-16 head that also reads the stride-8 features through a
    zero-initialised convolution gives, before training, exactly the plain head's outputs (it
    only adds what training finds there); its metadata rebuilds it, and the plain head's still
    rebuilds without the new branch."""
    from catscanner.training.detection import CatHead

    torch.manual_seed(0)
    c3, c4, c5 = torch.rand(2, 40, 16, 24) * 6, torch.rand(2, 112, 8, 12) * 6, torch.rand(2, 1280, 4, 6) * 6
    torch.manual_seed(1)
    plain = CatHead()
    torch.manual_seed(1)
    fine = CatHead(fine_input=True)
    assert fine.config["fine_input"] is True and "fine_input" not in plain.config
    assert not hasattr(CatHead(**plain.config), "l3s") and hasattr(CatHead(**fine.config), "l3s")
    fine.load_state_dict({**plain.state_dict(), "l3s.weight": fine.l3s.weight, "l3s.bias": fine.l3s.bias})
    for a, b in zip(plain(c3, c4, c5), fine(c3, c4, c5)):
        assert a.shape == b.shape == (2, a.shape[1], 8, 12) and torch.equal(a, b)
    with torch.no_grad():
        fine.l3s.weight.fill_(0.01)  # once trained, the stride-8 features do reach the heat map
    assert not torch.equal(plain(c3, c4, c5)[0], fine(c3, c4, c5)[0])


def test_fit_detector_with_an_ensemble_of_heads(data_dir, cat_photo, tmp_path):
    """``--heads 2``: two heads trained from seeds 0 and 1 travel in one file, rebuilt from its
    metadata; the exported heat map is the average of the two heads' probabilities (box size and
    offset their averages), and the scanner runs it."""
    from onnx import numpy_helper

    from catscanner.training.backbones import load_backbone
    from catscanner.training.detection import HeadEnsemble, backbone_taps, make_head

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ModelFiles.resolve(None).breeds, models / "breeds.onnx")
    report = fit_detector(data_dir, models / "detector.onnx", n_scenes=40, epochs=3, threads=2,
                          refit_all=False, max_photos=30, heads=2)
    scanner = Scanner(models, threads=1)
    meta = scanner.detector.model.meta
    assert report["heads"] == 2 == meta.details["head"]["heads"]
    head = make_head(meta.details["head"])
    assert isinstance(head, HeadEnsemble) and len(head.heads) == 2
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(models / "detector.onnx")).graph.initializer}
    state = {k: torch.from_numpy(inits[f"head.{k}"].copy()) for k in head.state_dict()}
    head.load_state_dict(state)
    assert not torch.equal(state["heads.0.l5.weight"], state["heads.1.l5.weight"])  # two seeds, two heads

    x = preprocess_frame(load_image(cat_photo), scanner.detector.preprocess)[None]
    out = scanner.detector.model.run(x)
    with torch.no_grad():
        taps = backbone_taps(load_backbone("efficientnet_lite0").eval(), torch.from_numpy(x))
        members = [h(*taps) for h in head.eval().heads]
    mean_heat = torch.stack([torch.sigmoid(m[0]) for m in members]).mean(0).numpy()
    assert np.abs(out[Output.CAT_HEATMAP] - mean_heat).max() < 1e-4
    assert np.abs(out[Output.BOX_SIZE] - torch.stack([m[1] for m in members]).mean(0).numpy()).max() < 1e-3
    result = scanner.scan(cat_photo)
    assert result.error is None and 0.0 <= result.cat_probability <= 1.0
