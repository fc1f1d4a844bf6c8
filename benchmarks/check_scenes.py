"""Report-like scenes on the fit side: does a head's held-out fifth predict the report scenes?

    catscan fit-detector --scenes 4000 --no-refit-all --look-size 0 \\
        --cache runs/detector_cache --out runs/probe_v07/detector.onnx      # a head on four fifths (v0.5's recipe)
    python benchmarks/check_scenes.py runs/probe_v07/detector.onnx --scenes 800

(or any full fit's four-fifths head: ``catscan fit-detector ... --first-head FILE``)

The fit chooses its scores and thresholds on its held-out fifth: plain photos and the scenes whose
every cat is held out, so mostly one-cat scenes (a scene of two cats holds two held-out cats one time
in 25). The report scenes hold 1-3 cats (45 / 35 / 20 %). Here the same scene recipe (``make_scene``,
fit pools, seed 7) draws its cats from the held-out fifth's cats only: scenes of the report's make-up
whose cats the head never saw, on fit-side backgrounds. Each box score and the thresholds are fitted
on the held-out fifth as ``fit_detector.choose_params`` does (on these same cats, as plain photos and
in mostly one-cat scenes: the check is independent of the head, not of that choice) (second look at 192 px on the three
likeliest boxes whose first score reaches 0.1) and applied unchanged to these scenes.
Nothing of the report side is read.

Also printed: why check-scene cats get no candidate box at all (heat-map peak >= 0.05 whose box
finds them), and with ``--choose-on-half``, what choosing the second score and the thresholds on the
held-out fifth plus half of the check scenes (``--scenes`` of them; the other half measures) would give;
with ``--curve``, the check scenes at every photo threshold; with ``--look-reuse R``, a box whose
crop would cover R of the photo reuses the first pass as the runtime does (``look_reuse``; default:
every box cut out); with ``--variants``, ways of choosing
the candidates and boxes that cost no more looks (``VARIANTS``),
each chosen on the held-out fifth as the fit would and measured on the check scenes.
"""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import replace

import numpy as np

from catscanner.progress import progress_bar
from catscanner.runtime.engine import OrtModel
from catscanner.runtime.detector import _logistic
from catscanner.training.fit_detector import (_fit_score, _out_of_fold, held_out_cat, pick_thresholds,
                                              threshold_table)
from catscanner.training.metrics import finds
from catscanner.training.scenes import Pools, make_scene
from catscanner.runtime.contract import Output
from look_selection import Probe, redraw

SEED = 7  # the fit's scenes use seed 0 (or the fit's --seed); these are other scenes
NEGATIVE_SEED = 11  # --extra-negatives: cat-free fit-side scenes of yet another seed


class CheckProbe(Probe):
    """The held-out fifth (indices below ``FIRST``), the check scenes (from ``FIRST`` on, of ``seed``)
    and the extra cat-free scenes (from ``NEGATIVE`` on)."""

    FIRST = 10 ** 6
    NEGATIVE = 2 * 10 ** 6
    seed = SEED

    def scene(self, i: int):
        if i >= self.NEGATIVE:
            return make_scene(self.pools, i - self.NEGATIVE, NEGATIVE_SEED)
        if i >= self.FIRST:
            return make_scene(self.check_pools, i - self.FIRST, self.seed)
        return super().scene(i)


def why_missed(ph: dict, rows: tuple) -> list[str]:
    """For each true cat of a photo without a candidate box that finds it: "box too large" (a
    candidate's centre lies in the cat but most of its box does not), "weak heat" (the heat map stays
    under the peak threshold over the cat's cells) or "peak elsewhere"."""
    boxes, heat = rows[0], ph["heat"]
    W, H = ph["scene_size"]
    h, w = heat.shape
    out = []
    for t in ph["true"]:
        if any(finds(tuple(b), t) for b in boxes):
            continue
        if any(t[0] <= (b[0] + b[2]) / 2 <= t[2] and t[1] <= (b[1] + b[3]) / 2 <= t[3] for b in boxes):
            out.append("box too large")
            continue
        y0, x0 = int(t[1] / H * h), int(t[0] / W * w)
        cells = heat[y0:max(y0 + 1, int(np.ceil(t[3] / H * h))), x0:max(x0 + 1, int(np.ceil(t[2] / W * w)))]
        out.append("weak heat" if cells.max() < 0.05 else "peak elsewhere")
    return out


def _apply(rows, coef, intercept) -> list[np.ndarray]:
    """A fitted score (coef, intercept) on each photo's rows of features."""
    return [_logistic(f, coef, intercept) if len(f) else np.zeros(0) for _, f, _ in rows]


def measure(probe: CheckProbe, n_held: int, peak: float = 0.05, redrawn=None, count: int | None = None,
            n_score: int | None = None) -> dict:
    """Scores and thresholds chosen on the held-out fifth (candidates at ``peak``; ``redrawn(old,
    new, W, H)``: which box to keep of a looked-at box and its redrawing from its crop, see
    ``look_selection.redraw``; ``count``: boxes looked at per photo, default the runtime's 3), applied
    to the check scenes. With ``n_score`` < ``n_held``, both scores are fitted on the first
    ``n_score`` photos only (out of fold there) and the rest of the choice photos (extra cat-free
    scenes) only widen the false-alarm budget of the threshold choice."""
    A, B = slice(0, n_held), slice(n_held, None)
    n_score = n_score or n_held
    S, N = slice(0, n_score), slice(n_score, n_held)
    folds = probe.folds = np.arange(n_held) % 5
    rows, idx = probe.rows(peak)
    first = _fit_score(rows[S])
    p1 = _out_of_fold(rows[S], folds[S]) + _apply(rows[N], *first) + _apply(rows[B], *first)
    outs: list[dict] = []  # the crops' outputs, for redrawing (every box is then cut out, no reuse)
    keep_outs = None if redrawn is None else (lambda out: outs.append(out) or np.zeros((len(out[Output.CAT_HEATMAP]), 0)))
    looked = probe.select(rows, idx, p1, probe.look.floor, count or probe.look.count, probe.look.floor, extra=keep_outs)
    if redrawn is not None:
        it = iter(outs)
        for n, (ph, (boxes, f, y)) in enumerate(zip(probe.photos, looked)):
            if len(boxes):
                W, H = ph["scene_size"]
                new = redraw(boxes, next(it), probe.look, probe.base.stride, peak, (W, H))
                bb = np.array([redrawn(o, q, W, H) for o, q in zip(boxes, new)])
                looked[n] = (bb, f, np.array([any(finds(tuple(b), t) for t in ph["true"]) for b in bb], bool))
    second = _fit_score(looked[S])
    oof = _out_of_fold(looked[S], folds[S]) + _apply(looked[N], *second)
    thr, thr2, held, ok = pick_thresholds(threshold_table(probe.photos[A], looked[A], oof, probe.base))
    table = threshold_table(probe.photos[B], looked[B], _apply(looked[B], *second), probe.base)
    check = next(s for t, t2, s in table if t == thr and t2 == thr2)
    return dict(thresholds=(thr, thr2), budget_met=ok, held=held, check=check, rows=rows, looked=looked, table=table)


def line(name: str, s: dict) -> None:
    print(f"{name}: photos with a cat called cat {s['is_cat_on_cat_photos']:.3f}, cats found {s['cats_found']:.3f}, "
          f"extra boxes {s['extra_boxes_per_photo']:.3f} per photo, false alarms {s['false_alarms']} of "
          f"{s['cat_free_photos']} cat-free photos", flush=True)


AREA = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
# zero-cost variants (as many boxes looked at): candidates at a lower peak, and looked-at boxes redrawn
VARIANTS = {
    "candidates at peak >= 0.03": dict(peak=0.03),
    "candidates at peak >= 0.02": dict(peak=0.02),
    "boxes redrawn from their crops when the first box is under 0.3 of the short side":
        dict(redrawn=lambda o, q, W, H: q if max(o[2] - o[0], o[3] - o[1]) < 0.3 * min(W, H) else o),
    "boxes redrawn from their crops when that makes them smaller":
        dict(redrawn=lambda o, q, W, H: q if AREA(q) < AREA(o) else o),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--scenes", type=int, default=800)
    ap.add_argument("--seed", type=int, default=SEED,
                    help=f"seed of the check scenes (default {SEED}; another seed gives scenes no earlier run saw)")
    ap.add_argument("--choose-on-half", action="store_true",
                    help="also choose on the held-out fifth + the first half of the check scenes, measure on the second")
    ap.add_argument("--variants", action="store_true", help="also measure the zero-cost variants in VARIANTS")
    ap.add_argument("--look-count", type=int, default=None,
                    help="boxes the second look examines per photo (default: the fit's, 3)")
    ap.add_argument("--curve", action="store_true",
                    help="also print the check scenes at every photo threshold (box threshold as chosen): "
                         "heads compared at equal false alarms rather than at the thresholds each chose")
    ap.add_argument("--extra-negatives", type=int, default=0, metavar="N",
                    help="choose the thresholds with N more cat-free fit-side scenes (another seed) beside the "
                         "held-out fifth: a false-alarm budget measured on more cat-free photos")
    ap.add_argument("--score-on-negatives", action="store_true",
                    help="with --extra-negatives, fit the two scores on them too (else on the held-out fifth only)")
    ap.add_argument("--look-reuse", type=float, nargs="+", default=[0.0],
                    help="a box whose crop would cover this share of the photo reuses the first pass, as the runtime "
                         "does with the detector's look_reuse (default 0: every box cut out); with several values, "
                         "the first is reported in full and the others compared to it on the same photos")
    a = ap.parse_args()
    probe = CheckProbe(OrtModel(a.model, threads=2), "held", reuse=a.look_reuse[0])
    probe.seed = a.seed
    probe.check_pools = Pools("fit")
    probe.check_pools.cats = [c for c in probe.check_pools.cats if held_out_cat(c[0].stem)]
    n_score = len(probe.photos)
    if a.extra_negatives:
        free, j = [], 0
        while len(free) < a.extra_negatives:  # about one fit scene in seven holds no cat
            if not make_scene(probe.pools, j, NEGATIVE_SEED).cats:
                free.append(j)
            j += 1
        probe.photos += [probe._first_pass(CheckProbe.NEGATIVE + j)
                         for j in progress_bar(free, desc=f"first pass on {len(free)} cat-free scenes (of {j})")]
    n_held = len(probe.photos)
    probe.photos += [probe._first_pass(CheckProbe.FIRST + j) for j in progress_bar(range(a.scenes), desc="check scenes")]
    B = slice(n_held, None)

    m = measure(probe, n_held, count=a.look_count, n_score=None if a.score_on_negatives else n_score)
    if a.look_count:
        print(f"\nlooking at up to {a.look_count} boxes per photo")
    thr, thr2 = m["thresholds"]
    print(f"\nthresholds chosen on the held-out fifth: {thr} / {thr2} ({'within' if m['budget_met'] else 'OVER'} the false-alarm budget)")
    extra = f" + {a.extra_negatives} cat-free scenes" if a.extra_negatives else ""
    line(f"held-out fifth{extra} ({n_held} photos, out of fold)", m["held"])
    line(f"check scenes ({a.scenes}, 1-3 unseen cats)", m["check"])
    if a.curve:
        print(f"\ncheck scenes at each photo threshold (box threshold {thr2}):")
        for t, t2, s in m["table"]:
            if t2 == thr2:
                line(f"  {t:.3f}", s)
    rows = m["rows"]
    cats = [(max(t[2] - t[0], t[3] - t[1]) / min(ph["scene_size"]), any(finds(tuple(b), t) for b in r[0]))
            for ph, r in zip(probe.photos[B], rows[B]) for t in ph["true"]]
    for lo, hi in ((0, 0.3), (0.3, 0.6), (0.6, 1.01)):
        g = [c for s, c in cats if lo <= s < hi]
        print(f"  check-scene cats {lo:.0%}-{hi:.0%} of the short side: {len(g)}, with a candidate box {np.mean(g):.3f}")
    print(f"  all check-scene cats with a candidate box: {np.mean([c for _, c in cats]):.3f}")
    missed = Counter(m for ph, r in zip(probe.photos[B], rows[B]) for m in why_missed(ph, r))
    print(f"  why the others have none: {dict(missed)}")
    for reuse in a.look_reuse[1:]:
        probe.look = replace(probe.look, reuse=reuse)
        v = measure(probe, n_held, count=a.look_count, n_score=None if a.score_on_negatives else n_score)
        print(f"\nlook reuse {reuse} (against {a.look_reuse[0]}): thresholds {v['thresholds'][0]} / {v['thresholds'][1]}")
        line("  held-out fifth", v["held"])
        line("  check scenes", v["check"])
    probe.look = replace(probe.look, reuse=a.look_reuse[0])
    if a.choose_on_half:
        choose_on_half(probe, m["looked"], n_held)
    if a.variants:
        for name, kw in VARIANTS.items():
            v = measure(probe, n_held, n_score=None if a.score_on_negatives else n_score, **kw)
            print(f"\n{name}: thresholds {v['thresholds'][0]} / {v['thresholds'][1]}")
            line("  held-out fifth", v["held"])
            line("  check scenes", v["check"])


def choose_on_half(probe: CheckProbe, looked: list[tuple], n_held: int) -> None:
    """The second score and the thresholds chosen on the held-out fifth alone, or on it plus the first
    half of the check scenes, each measured on the second half (the first score, and so which boxes
    are looked at, stay as fitted on the held-out fifth)."""
    half = n_held + (len(probe.photos) - n_held) // 2
    measure = slice(half, None)
    for name, ids in (("the held-out fifth", slice(0, n_held)), ("the held-out fifth + half the check scenes", slice(0, half))):
        f = np.arange(len(probe.photos[ids])) % 5
        oof = _out_of_fold(looked[ids], f)
        thr, thr2, chosen, _ = pick_thresholds(threshold_table(probe.photos[ids], looked[ids], oof, probe.base))
        second = _fit_score(looked[ids])
        table = threshold_table(probe.photos[measure], looked[measure], _apply(looked[measure], *second), probe.base)
        s = next(s for t, t2, s in table if t == thr and t2 == thr2)
        print(f"\nchosen on {name}: thresholds {thr} / {thr2}; on the second half of the check scenes: photos with a "
              f"cat called cat {s['is_cat_on_cat_photos']:.3f}, cats found {s['cats_found']:.3f}, extra boxes "
              f"{s['extra_boxes_per_photo']:.3f}, false alarms {s['false_alarms']} of {s['cat_free_photos']}", flush=True)


if __name__ == "__main__":
    main()
