"""``catscan bench --quick`` end to end, both pipelines (Cat Scanner and the PyTorch reference), on
few real photos: the report's structure, every photo shape with a positive p50 on both pipelines,
the runtime and precision that ran (``--runtime``/``--precision`` passed through to the Scanner),
and ratios that come from this one run, measured interleaved and never at the same moment.

One bench run is shared by the tests (module fixture): ~30 s on an idle 2-core machine (PyTorch
import and two ResNet-50s, 4 Oxford photos, one photo of each generated shape, two rounds). On a
machine whose cores are all busy it takes longer: PyTorch's threads slow down badly there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catscanner.bench.photos import SHAPE_NAMES
from catscanner.cli import app

pytest.importorskip("torch", reason="the reference pipeline needs PyTorch (pip install 'catscanner[train]')")

SIZES = {"640x480": "640x480", "12mp": "4032x3024", "panorama": "6000x2000", "portrait": "1080x1920"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, data_dir) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = {"CATSCAN_DATA": str(data_dir), "COLUMNS": "120"}
    result = CliRunner().invoke(app, ["bench", "--quick", "--photos", "4", "--shape-photos", "1",
                                      "--runtime", "onnxruntime", "--precision", "f32",
                                      "--json-out", str(out)], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_report_structure(bench_run):
    report, output = bench_run
    for key in ("run_id", "settings", "machine", "runtime", "precision", "photo_sets", "method", "pipelines",
                "speedup", "consistency"):
        assert key in report, key
    assert report["quick"] is True
    assert set(report["pipelines"]) == {"ours", "reference"}
    # both workers belong to this run
    assert {p["run_id"] for p in report["pipelines"].values()} == {report["run_id"]}
    m = report["machine"]
    assert len(m["load_average_at_start"]) == 3 and len(m["load_average_at_end"]) == 3
    assert isinstance(m["busy_processes_at_start"], list)
    assert [r["round"] for r in m["rounds"]] == [0, 1]  # what else ran, round by round
    assert all(isinstance(r["other_processes"], list) and r["seconds"] > 0 for r in m["rounds"])
    for p in report["pipelines"].values():
        assert p["cold_start_s"] > 0 and p["peak_rss_mb"] > 0
        assert p["throughput"]["rounds_photos"] == [4, 4] and p["throughput"]["photos_per_s"] > 0
        idle = p["idle_worker_cpu_ms_while_timing"]  # the waiting worker takes (almost) no CPU meanwhile
        assert idle["total"] <= 0.05 * idle["timed_s"] * 1000 + 200, idle
    assert report["pipelines"]["ours"]["torch_loaded"] is False  # the workers stay apart
    assert report["pipelines"]["reference"]["onnxruntime_loaded"] is False
    assert "speed-up" in output and "Cat Scanner runs on onnxruntime" in output


def test_every_shape_has_a_positive_p50(bench_run):
    report, _ = bench_run
    assert list(report["photo_sets"]) == list(SHAPE_NAMES)
    assert report["photo_sets"]["oxford"]["photos"] == 4
    for name, size in SIZES.items():
        info = report["photo_sets"][name]
        assert info["sizes"] == [size] and info["photos"] == 1 and info["cats"] == 1
        assert info["file_kb_mean"] > 20
    for pipeline in report["pipelines"].values():
        for name in SHAPE_NAMES:
            lat = pipeline["latency"][name]
            assert lat["ms"]["n"] == report["photo_sets"][name]["photos"]
            assert lat["ms"]["p50"] > 0 and lat["cpu_ms"]["p50"] > 0
    # the whole-frame scanner decodes a 12 MP photo at half size, a 500-px one at full size
    ours = report["pipelines"]["ours"]["latency"]
    for name in SHAPE_NAMES:  # issue 8's bound, on every shape: detect stage vs version 0.1's centre-crop one
        lat = ours[name]
        assert lat["centre_crop_detect_ms_p50"] > 0
        assert lat["detect_vs_centre_crop_p50"] == round(lat["stage_ms_p50"]["detect"] / lat["centre_crop_detect_ms_p50"], 2)
    assert ours["12mp"]["stage_ms_p50"]["decode"] > ours["oxford"]["stage_ms_p50"]["decode"]


def test_runtime_and_precision_are_reported(bench_run):
    report, _ = bench_run
    ours = report["pipelines"]["ours"]
    assert report["runtime"].startswith("onnxruntime ") and report["precision"] == "f32"
    assert report["settings"]["runtime"] == "onnxruntime" and report["settings"]["precision"] == "f32"
    assert set(ours["models"]) == {"detector", "breeds"}
    for role, d in ours["models"].items():
        assert d["runtime"] == "onnxruntime" and d["precision"] == "f32" and d["threads"] == 2
        assert Path(d["path"]).name == f"{role}.onnx" and d["bytes"] == os.path.getsize(d["path"])
        assert len(d["sha256_12"]) == 12 and d["backbone"]
    assert report["pipelines"]["reference"]["runtime"].startswith("pytorch")


def test_ratios_come_from_this_run(bench_run):
    report, _ = bench_run
    ours, ref = report["pipelines"]["ours"], report["pipelines"]["reference"]
    sp = report["speedup"]
    for name in SHAPE_NAMES:
        assert sp["latency_p50"][name] == round(ref["latency"][name]["ms"]["p50"] / ours["latency"][name]["ms"]["p50"], 2)
        per_round = sp["latency_p50_per_round"][name]
        assert len(per_round) == min(2, report["photo_sets"][name]["photos"])
        assert sp["latency_p50_median_of_rounds"][name] == pytest.approx(sorted(per_round)[len(per_round) // 2]
                                                                      if len(per_round) % 2 else sum(per_round) / 2, abs=0.011)
        assert sp["latency_p50_best_rounds"][name] == round(min(ref["latency"][name]["per_round_p50"])
                                                            / min(ours["latency"][name]["per_round_p50"]), 2)
    assert isinstance(sp["rounds_agree"], bool)
    assert sp["throughput"] == round(ours["throughput"]["photos_per_s"] / ref["throughput"]["photos_per_s"], 2)
    c = report["consistency"]
    assert c["throughput_speedup"] == sp["throughput"]
    assert c["throughput_speedup_from_latency_and_gains"] == pytest.approx(sp["throughput"], rel=0.03)


def test_measurements_are_interleaved_and_never_overlap(bench_run):
    report, _ = bench_run
    calls = sorted((c["t0"], c["t1"], name, c["phase"], c["set"])
                   for name, p in report["pipelines"].items() for c in p["calls"])
    # latency: Oxford 2 rounds x 2 pipelines, each one-photo shape set 1 round x 2; throughput 2 x 2
    assert len(calls) == 2 * 2 + (len(SHAPE_NAMES) - 1) * 2 + 2 * 2
    for (_, t1, *_), (t0, *_) in zip(calls, calls[1:]):
        assert t1 <= t0  # one pipeline at a time
    owners = [c[2] for c in calls]
    switches = sum(a != b for a, b in zip(owners, owners[1:]))
    assert switches >= len(calls) // 2  # A B B A A B ...: not one pipeline's block after the other's
    # each chunk runs on both pipelines back to back
    for name in SHAPE_NAMES:
        assert [c[2] for c in calls if c[3] == "latency" and c[4] == name][:2] in (["ours", "reference"],
                                                                                   ["reference", "ours"])
