"""The fast path keeps its answers: JPEG draft decoding (the decoder scales big photos down by
1/2-1/8 before the model's own resize) against a full-size decode, same models.

Measured tolerance (README, "Speed"): the verdict never changes, the cat probability moves by
less than 0.05, breed percentages move by a median of at most 1 point and at most 12 points on
any photo — the same size of change as re-saving the JPEG at quality 90 instead of 92.
(ONNX Runtime vs PyTorch parity, within 1e-4, is in test_models.py; the accuracy floor of the
shipped model, measured through this same fast path, is in test_breeds.py.)
"""

from __future__ import annotations

import io
import statistics

from PIL import Image

from catscanner.training.data import read_split
from catscanner.runtime.decoding import decode_image

MEDIAN_POINTS, MAX_POINTS = 1.0, 12.0


def test_draft_decoding_keeps_the_answers(scanner, oxford_dir):
    worst, top_same, n = [], 0, 0
    for it in read_split(oxford_dir, "test")[::100]:  # 11 photos across the breeds
        with Image.open(it.path) as im:
            photo = im.convert("RGB")
        big = photo.resize((photo.width * 4, photo.height * 4), Image.Resampling.BICUBIC)  # ~2000 px
        buf = io.BytesIO()
        big.save(buf, "JPEG", quality=92)
        data = buf.getvalue()

        fast = scanner.scan(data, threshold=0.0)  # draft-mode JPEG decoding
        full = scanner.scan(decode_image(data, max_pixels=100_000_000), threshold=0.0)  # full decode
        assert fast.is_cat == full.is_cat, it.name
        assert abs(fast.cat_probability - full.cat_probability) < 0.05, it.name
        assert (fast.width, fast.height) == big.size  # sizes and boxes are in the photo's own pixels
        if fast.box:
            assert fast.box.right <= big.width and fast.box.bottom <= big.height
            assert abs(fast.box.left - full.box.left) <= big.width * 0.15
        if full.is_cat:
            full_pct = {b.breed: b.percent for b in full.breeds}
            worst.append(max(abs(b.percent - full_pct[b.breed]) for b in fast.breeds))
            top_same += fast.breeds[0].breed == full.breeds[0].breed
            n += 1
    assert n >= 9
    assert statistics.median(worst) <= MEDIAN_POINTS, worst
    assert max(worst) <= MAX_POINTS, worst
    assert top_same >= n - 1
