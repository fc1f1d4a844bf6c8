"""Image decoding: every format and pixel mode a user may send becomes an upright 8-bit RGB image,
and every bad input fails with its own CatScannerError subclass and a message saying what was wrong.

Real photos only: the Oxford-IIIT Pet files, re-encoded in memory (or in tmp) where a test needs
another format. Nothing is written to the shared data folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catscanner.errors import (
    CatScannerError,
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
)
from catscanner.runtime.decoding import SOURCE_SIZE, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, decode_image, load_image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GIF_MAGIC = (b"GIF87a", b"GIF89a")
JPEG_MAGIC = b"\xff\xd8\xff"


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size, (a.size, b.size)
    return float(np.abs(pixels(a) - pixels(b)).mean())


def assert_rgb(img: Image.Image, size: tuple[int, int] | None = None) -> None:
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    if size is not None:
        assert img.size == size


@pytest.fixture(scope="module")
def photo_bytes(cat_photo: Path) -> bytes:
    return cat_photo.read_bytes()


@pytest.fixture(scope="module")
def photo(photo_bytes: bytes) -> Image.Image:
    """The cat photo as RGB (500x375). Shared: copy before changing it."""
    img = Image.open(io.BytesIO(photo_bytes))
    assert img.format == "JPEG" and img.size == (500, 375)
    return img.convert("RGB")


# --------------------------------------------------------------------------- real Oxford files


def test_oxford_jpg_files_holding_png_or_gif_decode_to_rgb(oxford_images: Path):
    odd: dict[str, list[Path]] = {"PNG": [], "GIF": []}
    for path in sorted(oxford_images.glob("*.jpg")):
        with path.open("rb") as f:
            head = f.read(8)
        if head.startswith(PNG_MAGIC):
            odd["PNG"].append(path)
        elif head.startswith(GIF_MAGIC):
            odd["GIF"].append(path)
        else:
            assert head.startswith(JPEG_MAGIC), f"{path.name} is neither JPEG, PNG nor GIF: {head!r}"
    assert odd["PNG"] and odd["GIF"], f"expected .jpg files holding PNG and GIF data, found {odd}"
    for fmt, paths in odd.items():
        for path in paths:
            with Image.open(path) as raw:
                assert raw.format == fmt
                size = raw.size
            img = load_image(path)  # by content: the .jpg name must not matter
            assert_rgb(img, size)
            assert pixels(img).std() > 10, f"{path.name} decoded to a flat image"


def test_real_oxford_jpegs_decode_to_rgb(oxford_images: Path):
    paths = sorted(oxford_images.glob("*.jpg"))[::150]
    assert len(paths) >= 10
    for path in paths:
        with Image.open(path) as raw:
            size = raw.size
        assert_rgb(load_image(path), size)


def test_decoding_goes_by_content_not_by_name(tmp_path: Path, photo: Image.Image):
    (tmp_path / "really_a_png.jpg").write_bytes(encode(photo, "PNG"))
    (tmp_path / "really_a_jpeg.png").write_bytes(encode(photo, "JPEG", quality=95))
    (tmp_path / "no_suffix").write_bytes(encode(photo, "GIF"))
    for name in ("really_a_png.jpg", "really_a_jpeg.png", "no_suffix"):
        assert_rgb(load_image(tmp_path / name), photo.size)


# --------------------------------------------------------------------------- EXIF orientation

# EXIF Orientation -> the transpose that makes the stored pixels upright.
UPRIGHT = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}
WRONG = {3: None, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_rotated_jpeg_comes_back_upright(tmp_path: Path, photo: Image.Image, orientation: int):
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation; the stored pixels stay un-rotated
    path = tmp_path / f"rotated_{orientation}.jpg"
    path.write_bytes(encode(photo, "JPEG", quality=95, subsampling=0, exif=exif.tobytes()))
    plain = decode_image(encode(photo, "JPEG", quality=95, subsampling=0))  # same pixels, no EXIF
    with Image.open(path) as raw:
        assert raw.size == photo.size and raw.getexif().get(0x0112) == orientation

    img = load_image(path)
    upright = photo.transpose(UPRIGHT[orientation])
    w, h = photo.size
    assert_rgb(img, (h, w) if orientation in (6, 8) else (w, h))
    assert mean_abs_diff(img, plain.transpose(UPRIGHT[orientation])) == 0
    assert mean_abs_diff(img, upright) < 3  # only JPEG re-encoding noise
    if WRONG[orientation] is not None:  # and it is not turned the wrong way
        assert mean_abs_diff(img, photo.transpose(WRONG[orientation])) > 20

    # Draft (reduced-size) JPEG decoding keeps the orientation too.
    small = decode_image(path.read_bytes(), draft_short_side=100)
    assert min(small.size) >= 100
    assert (small.size[0] < small.size[1]) == (orientation in (6, 8))  # portrait after turning
    assert small.info[SOURCE_SIZE] == img.size  # the photo's own upright size is remembered
    assert mean_abs_diff(small, upright.resize(small.size, Image.Resampling.BILINEAR)) < 12


# --------------------------------------------------------------------------- formats and modes


@pytest.mark.parametrize(
    ("fmt", "options", "tolerance"),
    [
        ("PNG", {}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("WEBP", {"quality": 90}, 6),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("JPEG", {"quality": 95, "subsampling": 0}, 3),
    ],
)
def test_same_photo_in_other_formats(tmp_path: Path, photo: Image.Image, fmt: str, options: dict, tolerance: float):
    path = tmp_path / f"cat.{fmt.lower()}"
    path.write_bytes(encode(photo, fmt, **options))
    with Image.open(path) as raw:
        assert raw.format == fmt
    img = load_image(path)
    assert_rgb(img, photo.size)
    assert mean_abs_diff(img, photo) <= tolerance


def test_gif_decodes_its_first_frame(photo: Image.Image):
    red = Image.new("RGB", photo.size, (255, 0, 0))
    data = encode(photo, "GIF", save_all=True, append_images=[red], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.format == "GIF" and raw.n_frames == 2
        first = raw.convert("RGB")
    img = decode_image(data)
    assert_rgb(img, photo.size)
    assert mean_abs_diff(img, first) == 0
    assert mean_abs_diff(img, photo) < 15  # 256-colour palette noise only
    assert mean_abs_diff(img, red) > 60


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_on_white(photo: Image.Image, fmt: str):
    pal = photo.quantize(colors=255)  # indices 0-254; 255 becomes the transparent (black) entry
    palette = pal.getpalette()[: 255 * 3] + [0, 0, 0]
    pal.putpalette(palette)
    box = (50, 40, 150, 120)
    pal.paste(255, box)
    data = encode(pal, fmt, transparency=255)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "P" and raw.info.get("transparency") == 255
    img = decode_image(data)
    assert_rgb(img, photo.size)
    arr = pixels(img)
    l, t, r, b = box
    assert (arr[t:b, l:r] == 255).all(), "transparent pixels must be white, not the black palette entry"
    opaque = pixels(pal.convert("RGB"))
    outside = np.ones(arr.shape[:2], bool)
    outside[t:b, l:r] = False
    assert (arr[outside] == opaque[outside]).all()


def test_rgba_is_composited_on_white(photo: Image.Image):
    rgba = photo.convert("RGBA")
    rgba.paste((0, 0, 0, 0), (50, 40, 150, 120))  # fully transparent
    rgba.paste((0, 0, 0, 128), (200, 40, 300, 120))  # half-transparent black
    data = encode(rgba, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "RGBA"
    img = decode_image(data)
    assert_rgb(img, photo.size)
    arr = pixels(img)
    assert (arr[40:120, 50:150] == 255).all()
    assert np.abs(arr[40:120, 200:300] - 127).max() <= 1  # black at 50 % over white
    assert (arr[200:, :] == pixels(photo)[200:, :]).all()  # opaque part untouched


def test_la_grayscale_with_alpha(photo: Image.Image):
    gray = photo.convert("L")
    alpha = Image.new("L", photo.size, 255)
    alpha.paste(0, (50, 40, 150, 120))
    la = Image.merge("LA", (gray, alpha))
    data = encode(la, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "LA"
    arr = pixels(decode_image(data))
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert (arr[40:120, 50:150] == 255).all()
    assert (arr[200:, :, 0] == pixels(gray)[200:, :]).all()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_grayscale(photo: Image.Image, fmt: str):
    gray = photo.convert("L")
    data = encode(gray, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    assert Image.open(io.BytesIO(data)).mode == "L"
    img = decode_image(data)
    assert_rgb(img, photo.size)
    arr = pixels(img)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert np.abs(arr[..., 0] - pixels(gray)).mean() <= (0 if fmt == "PNG" else 3)


def test_cmyk_jpeg(photo: Image.Image):
    data = encode(photo.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    img = decode_image(data)
    assert_rgb(img, photo.size)
    assert mean_abs_diff(img, photo) < 4
    small = decode_image(data, draft_short_side=100)  # draft decoding of CMYK works too
    assert small.mode == "RGB" and min(small.size) >= 100


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_is_scaled_not_clipped(fmt: str):
    arr = np.zeros((64, 256), np.uint16)
    arr[:, :64] = 32768  # mid grey -> ~128
    arr[:, 64:128] = 65535  # white -> 255
    arr[:, 128:192] = 256  # very dark -> 1 (clipping would give 255)
    arr[:, 192:] = np.linspace(0, 65535, 64).astype(np.uint16)  # a ramp stays a ramp
    data = encode(Image.fromarray(arr), fmt)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode.startswith("I"), raw.mode  # really 16 bits per pixel
    img = decode_image(data)
    assert_rgb(img, (256, 64))
    out = pixels(img)[..., 0]
    assert abs(int(out[0, 0]) - 128) <= 1
    assert out[0, 64] == 255
    assert out[0, 128] <= 2
    ramp = out[0, 192:]
    assert (np.diff(ramp) >= 0).all() and ramp[0] == 0 and ramp[-1] == 255


# --------------------------------------------------------------------------- draft decoding


def test_draft_short_side_keeps_at_least_the_requested_side(photo_bytes: bytes):
    full = decode_image(photo_bytes)
    assert full.size == (500, 375)
    for want in (1, 32, 47, 94, 100, 187, 188, 189, 300, 375, 1000):
        img = decode_image(photo_bytes, draft_short_side=want)
        assert_rgb(img)
        assert min(img.size) >= min(want, 375), (want, img.size)
        assert abs(img.size[0] / img.size[1] - 500 / 375) < 0.02  # aspect ratio kept
    assert decode_image(photo_bytes, draft_short_side=100).size == (250, 188)  # JPEG draft did shrink it
    assert decode_image(photo_bytes, draft_short_side=1).size == (63, 47)  # 1/8, the smallest JPEG scale
    assert decode_image(photo_bytes, draft_short_side=None).size == (500, 375)


def test_draft_short_side_leaves_other_formats_full_size(photo: Image.Image):
    assert decode_image(encode(photo, "PNG"), draft_short_side=100).size == photo.size


# --------------------------------------------------------------------------- errors


def test_every_image_error_is_a_catscanner_error():
    for cls in (EmptyImageError, NotAnImageError, CorruptImageError, ImageTooLargeError, ImageTooSmallError):
        assert issubclass(cls, ImageError) and issubclass(cls, CatScannerError)
    codes = [c.code for c in (EmptyImageError, NotAnImageError, CorruptImageError, ImageTooLargeError,
                              ImageTooSmallError)]
    assert len(set(codes)) == len(codes)  # stable, distinct machine-readable codes


def _big_png(width: int, height: int) -> bytes:
    """A real, valid PNG with many pixels but a few KB of data (1-bit, all black)."""
    return encode(Image.new("1", (width, height)), "PNG")


ERROR_CASES = {
    # name: (make bytes from the real photo bytes, decode kwargs, exception, code, message must contain)
    "empty": (lambda b, p: b"", {}, EmptyImageError, "empty", ["empty", "0 bytes"]),
    "text": (lambda b, p: b"Cat Scanner notes: not a photo at all.\n" * 20, {}, NotAnImageError,
             "not_an_image", ["not an image", "JPEG, PNG"]),
    "truncated_jpeg": (lambda b, p: b[: len(b) // 2], {}, CorruptImageError, "corrupt",
                       ["truncated or corrupt", "Re-export"]),
    "unsupported_format": (lambda b, p: encode(p, "PPM"), {}, NotAnImageError, "not_an_image",
                           ["PPM images are not supported"]),
    "over_50_megapixels": (lambda b, p: _big_png(8000, 7000), {}, ImageTooLargeError, "too_many_pixels",
                           ["8000x7000", "56.0 megapixels", "limit is 50 megapixels"]),
    "over_pillow_bomb_limit": (lambda b, p: _big_png(15000, 12000), {}, ImageTooLargeError, "too_many_pixels",
                               ["180.0 megapixels", "limit is 50 megapixels"]),  # not Pillow's wording
    "over_small_max_pixels": (lambda b, p: b, {"max_pixels": 150_000}, ImageTooLargeError, "too_many_pixels",
                              ["500x375", "megapixels"]),
    "too_small": (lambda b, p: encode(p.resize((20, 40)), "PNG"), {}, ImageTooSmallError, "too_small",
                  ["20x40", f"{DEFAULT_MIN_SIDE} px"]),
    "too_small_custom": (lambda b, p: b, {"min_side": 400}, ImageTooSmallError, "too_small",
                         ["500x375", "400 px"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_raises_its_own_error(case: str, photo_bytes: bytes, photo: Image.Image):
    make, kwargs, exc_type, code, phrases = ERROR_CASES[case]
    data = make(photo_bytes, photo)
    with pytest.raises(exc_type) as info:
        decode_image(data, **kwargs)
    err = info.value
    assert isinstance(err, CatScannerError) and isinstance(err, ImageError)
    assert err.code == code
    message = str(err)
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} missing from {message!r}"


def test_load_image_of_a_truncated_file(tmp_path: Path, photo_bytes: bytes):
    path = tmp_path / "half.jpg"
    path.write_bytes(photo_bytes[: len(photo_bytes) // 2])
    with pytest.raises(CorruptImageError):
        load_image(path)


def test_max_pixels_above_pillows_warning_limit_is_honoured():
    """A caller's larger max_pixels is the rule, not Pillow's 89 MP warning threshold.

    100 MP passes the pixel check; min_side then stops it before the (costly) full decode.
    """
    data = _big_png(10_000, 10_000)
    with pytest.raises(ImageTooLargeError, match="10000x10000 = 100.0 megapixels; the limit is 50"):
        decode_image(data)
    assert DEFAULT_MAX_PIXELS == 50_000_000
    with pytest.raises(ImageTooSmallError):
        decode_image(data, max_pixels=200_000_000, min_side=20_000)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about cut TIFF/EXIF tags
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_any_cut_of_a_file_is_rgb_or_an_image_error(photo: Image.Image, fmt: str):
    data = encode(photo, fmt)
    for n in (1, 3, 7, 16, 33, 100, 1000, len(data) // 2, len(data) - 16):
        try:
            img = decode_image(data[:n])
        except CorruptImageError as e:  # says what to do: a cut WebP said only "(OSError: could not create decoder object)."
            assert "Re-export or re-download the photo" in str(e), (n, str(e))
            continue
        except ImageError:
            continue
        assert_rgb(img, photo.size)  # the cut only lost trailing metadata


def test_second_look_square_holds_the_whole_box_and_pads_outside_the_photo():
    """The detector's second look cuts a square of 1.15 x the box's longer side around the box: inside
    the photo it is the photo itself, resized; where it sticks out, the mean colour (0 once normalised)."""
    from catscanner.runtime.preprocessing import Preprocess, preprocess_square

    spec = Preprocess(320, 1.0, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0), "bicubic", 100_000, 32)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    inside = preprocess_square(img, (100, 100, 215, 169), 64, spec)  # square side 132 around a 115 x 69 box
    ref = np.asarray(img.resize((64, 64), Image.Resampling.BICUBIC, box=(91.375, 68.375, 223.625, 200.625),
                                reducing_gap=None), np.float32)
    assert inside.shape == (3, 64, 64)
    np.testing.assert_allclose(inside, (ref.transpose(2, 0, 1) - 127) / 128, atol=1e-6)
    edge = preprocess_square(img, (0, 0, 100, 100), 64, spec)  # a box in the top-left corner
    pad = round(64 * 7.5 / 115)  # 7.5 of the 115-px square lie outside the photo on each of two sides
    assert np.all(edge[:, :pad - 1, :] == 0) and np.all(edge[:, :, :pad - 1] == 0)
    assert np.abs(edge[:, pad + 1:, pad + 1:]).mean() > 0.1  # the photo fills the rest


@pytest.mark.parametrize("spec_of", ["detector", "breeds"])
def test_normalize_gives_exactly_the_model_input_formula(photo: Image.Image, spec_of: str):
    """``normalize`` (transposed while 8-bit, normalised in place for speed) must give exactly
    ``(x - mean) / std`` in float32, channels first and C-contiguous, for each shipped model's
    preprocessing (the detector's one mean and std, the breed model's per-channel ones)."""
    from catscanner.runtime.contract import ModelFiles
    from catscanner.runtime.engine import load_model
    from catscanner.runtime.preprocessing import normalize

    files = ModelFiles.resolve(None)
    spec = load_model(files.detector if spec_of == "detector" else files.breeds, 1, "onnxruntime").meta.preprocess
    rgb = photo.convert("RGB").resize((96, 64))
    want = ((np.asarray(rgb, np.float32) - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32))
    got = normalize(rgb, spec)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"] and got.shape == (3, 64, 96)
    assert np.array_equal(got, want.transpose(2, 0, 1))
