"""What the Python API does with every kind of input, hostile or careless (issue 10): paths that are
not regular files, wrong types, PIL images in any mode, arrays, file objects, deep (16/32-bit)
images, broken headers, and a batch mixing good and bad inputs.

Real photos (the shared ``scanner`` and ``cat_photo``, a Bengal, come from tests/conftest.py). A
regression here must fail, never hang the suite or eat the machine's memory: the named-pipe test
has a time limit and the /dev/zero test runs in a child process with a memory limit.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catscanner.errors import (
    CorruptImageError,
    FileTooLargeError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    UnreadableFileError,
    UnsupportedInputError,
)


@pytest.fixture(scope="module")
def grey(cat_photo: Path) -> Image.Image:
    """The cat photo in 8-bit greyscale (500x375)."""
    with Image.open(cat_photo) as img:
        return img.convert("L")


@pytest.fixture(scope="module")
def grey_result(scanner, grey: Image.Image):
    result = scanner.scan(grey)
    assert result.is_cat is True and result.top_breed is not None
    return result


def png_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def black_png16(width: int, height: int) -> bytes:
    """A valid 16-bit greyscale PNG of zeros, built row by row (a few hundred KB, no pixels held)."""
    row = b"\x00" + bytes(2 * width)  # filter type 0 + big-endian 16-bit samples
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # bit depth 16, colour type 0 (grey)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# --------------------------------------------------------------------------- a batch goes on


def test_scan_many_reports_bad_inputs_and_keeps_the_good_results(scanner, cat_photo: Path):
    results = list(scanner.scan_many([cat_photo, None, "/missing/cat.jpg", cat_photo]))
    assert len(results) == 4
    assert [r.path for r in results] == [str(cat_photo), None, "/missing/cat.jpg", str(cat_photo)]
    assert [r.error_code for r in results] == [None, "bad_input", "io_error", None]
    for r in (results[0], results[3]):
        assert r.ok and r.is_cat and r.top_breed.breed == "Bengal"
    for r in results[1:3]:
        assert not r.ok and r.error and not r.is_cat and r.breeds == [] and r.cats == []
    assert "NoneType" in results[1].error


# --------------------------------------------------------------------------- paths that are not photo files


def test_named_pipe_is_refused_at_once(scanner, tmp_path: Path):
    fifo = tmp_path / "cat.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException | object] = []

    def scan() -> None:
        try:
            outcome.append(scanner.scan(fifo))
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome.append(e)

    worker = threading.Thread(target=scan, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # a regression blocks waiting for a writer: unblock it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("scanning a named pipe blocked (it waited for a writer instead of refusing the path)")
    (err,) = outcome
    assert isinstance(err, UnreadableFileError), err
    assert err.code == "io_error" and "named pipe" in str(err)


def test_link_to_dev_zero_is_refused_without_reading_it(tmp_path: Path):
    """In a child process limited to 2 GiB of data, so a regression that reads /dev/zero fails
    with MemoryError instead of exhausting the machine."""
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    code = f"""
import resource
hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
resource.setrlimit(resource.RLIMIT_DATA, (2 << 30 if hard == resource.RLIM_INFINITY else min(2 << 30, hard), hard))
from catscanner import Scanner
try:
    Scanner(threads=1).scan({str(link)!r})
except Exception as e:
    print(type(e).__name__, getattr(e, "code", "-"), e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("UnreadableFileError io_error "), out.stdout
    assert "character device" in out.stdout


def test_a_folder_is_not_a_photo(scanner, tmp_path: Path, cat_photo: Path):
    with pytest.raises(UnreadableFileError, match="is a folder"):
        scanner.scan(tmp_path)
    results = list(scanner.scan_many([tmp_path, cat_photo]))  # a batch goes on past it
    assert [r.error_code for r in results] == ["io_error", None] and results[1].is_cat


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(("value", "type_name"), [(5, "int"), ({}, "dict"), (3_000_000_000, "int"), (1.5, "float")])
def test_wrong_types_are_named_in_the_error(scanner, value, type_name: str):
    with pytest.raises(UnsupportedInputError) as info:
        scanner.scan(value)
    assert info.value.code == "bad_input"
    assert f"got {type_name}" in str(info.value)
    assert "empty" not in str(info.value) and "not an image" not in str(info.value)


def test_binary_file_object(scanner, cat_photo: Path):
    with open(cat_photo, "rb") as f:
        r = scanner.scan(f)
    assert r.path == str(cat_photo)  # the file object's name
    assert r.is_cat and r.top_breed.breed == "Bengal" and (r.width, r.height) == (500, 375)
    with pytest.raises(UnsupportedInputError, match="'rb'"):
        scanner.scan(io.StringIO("a text stream, not bytes"))


def test_a_photo_opened_in_text_mode_is_a_typed_error(scanner, cat_photo: Path):
    with open(cat_photo) as text, pytest.raises(UnsupportedInputError, match="'rb'"):
        scanner.scan(text)


def test_a_file_object_over_the_byte_limit_is_too_large(cat_photo: Path):
    from catscanner import FileTooLargeError, Scanner

    small = Scanner(threads=1, max_file_bytes=1000)
    with open(cat_photo, "rb") as f, pytest.raises(FileTooLargeError) as info:
        small.scan(f)
    assert info.value.code == "too_large"


def test_numpy_arrays(scanner, cat_photo: Path, grey: Image.Image):
    with Image.open(cat_photo) as img:
        rgb = np.asarray(img.convert("RGB"))
    r = scanner.scan(rgb)
    assert r.path is None and r.is_cat and r.top_breed.breed == "Bengal" and (r.width, r.height) == (500, 375)
    assert scanner.scan(np.asarray(grey)).is_cat  # (H, W) greyscale
    with pytest.raises(UnsupportedInputError, match="uint8"):
        scanner.scan(rgb.astype(np.float64))


# --------------------------------------------------------------------------- PIL images: same checks, same conversions


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_deep_grey_pil_image_gets_the_answer_of_its_8_bit_pixels(scanner, grey: Image.Image, grey_result, mode: str):
    """A 16-bit (or 32-bit int / float) greyscale cat, its 8-bit pixels scaled x257 to the full
    16-bit range: the same verdict as the 8-bit photo, as a PIL image and as 16-bit PNG bytes
    (issue 10: as a PIL image it was 'no cat')."""
    deep = np.asarray(grey, dtype=np.uint16) * 257
    img = Image.fromarray(deep) if mode == "I;16" else Image.fromarray(deep.astype(np.int32 if mode == "I" else np.float32))
    assert img.mode == mode and img.getextrema()[1] > 255 * 250
    as_pil = scanner.scan(img)
    as_png = scanner.scan(png_bytes(Image.fromarray(deep)))
    for r in (as_pil, as_png):
        assert r.is_cat is True
        assert r.cat_probability == pytest.approx(grey_result.cat_probability, abs=1e-4)
        assert r.top_breed.breed == grey_result.top_breed.breed
        assert r.box == grey_result.box
    assert img.mode == mode  # the caller's image was not changed


@pytest.mark.parametrize(("scale", "dtype"), [(1 / 255, np.float32), (1000, np.int32)])
def test_32_bit_grey_in_its_own_range_is_not_a_black_or_white_photo(scanner, grey: Image.Image, grey_result,
                                                                     scale: float, dtype):
    """Floats in 0-1 (a common float TIFF) and integers beyond 16 bits: scaled by the range they use
    (they came out black, or white, and "no cat")."""
    img = Image.fromarray((np.asarray(grey, dtype=np.float64) * scale).astype(dtype))
    r = scanner.scan(img)
    assert r.is_cat is True and r.top_breed.breed == grey_result.top_breed.breed
    assert r.cat_probability == pytest.approx(grey_result.cat_probability, abs=0.02)


def test_float_tiff_bytes_decode(scanner, grey: Image.Image, grey_result):
    """A 32-bit float TIFF (issue 10 names it) is scanned like its 8-bit pixels, not refused as corrupt."""
    out = io.BytesIO()
    Image.fromarray(np.asarray(grey, dtype=np.float32) * 257).save(out, "TIFF")
    r = scanner.scan(out.getvalue())
    assert r.is_cat and r.cat_probability == pytest.approx(grey_result.cat_probability, abs=1e-4)


@pytest.mark.parametrize("mode", ["La", "LA", "RGBa", "PA", "CMYK", "1"])
def test_pil_image_in_any_mode_scans(scanner, cat_photo: Path, mode: str):
    with Image.open(cat_photo) as img:
        rgb = img.convert("RGB")
    if mode in ("La", "LA"):
        img = Image.merge("LA", (rgb.convert("L"), Image.new("L", rgb.size, 255))).convert(mode)
    elif mode == "RGBa":
        img = rgb.convert("RGBA").convert("RGBa")
    elif mode == "PA":
        img = Image.merge("RGBA", (*rgb.split(), Image.new("L", rgb.size, 255))).convert("PA")
    else:
        img = rgb.convert(mode)
    assert img.mode == mode
    r = scanner.scan(img)  # every mode converts to RGB (a raw Pillow ValueError would be a bug)
    assert r.ok and (r.width, r.height) == (500, 375)
    if mode != "1":  # a 1-bit photo may lose the cat; the others keep it
        assert r.is_cat


@pytest.mark.parametrize("size", [(0, 0), (0, 100), (20, 20), (500, 31)])
def test_pil_image_too_small_raises_the_typed_error(scanner, size: tuple[int, int]):
    with pytest.raises(ImageTooSmallError) as info:
        scanner.scan(Image.new("RGB", size))
    assert info.value.code == "too_small" and f"{size[0]}x{size[1]}" in str(info.value)


def test_pil_image_over_the_pixel_limit_raises_the_typed_error(scanner):
    with pytest.raises(ImageTooLargeError, match="8000x7000"):
        scanner.scan(Image.new("1", (8000, 7000)))


# --------------------------------------------------------------------------- broken and bulky files


def test_a_jpeg_cut_inside_its_header_is_corrupt_not_another_format(scanner, cat_photo: Path):
    data = cat_photo.read_bytes()
    for n in (4, 20, 100, 300):
        with pytest.raises(CorruptImageError):
            scanner.scan(data[:n])
    with pytest.raises(NotAnImageError):  # for contrast: bytes that never were an image
        scanner.scan(b"Cat Scanner notes: not a photo at all.\n" * 10)


def test_a_png_with_a_bad_header_crc_is_corrupt(scanner, grey: Image.Image):
    data = bytearray(png_bytes(grey))
    assert data[12:16] == b"IHDR"
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    with pytest.raises(CorruptImageError) as info:
        scanner.scan(bytes(data))
    assert info.value.code == "corrupt"


def test_a_zero_by_zero_png_is_corrupt(scanner):
    with pytest.raises(CorruptImageError):  # issue 10: was 415 not_an_image
        scanner.scan(black_png16(0, 0))


def test_a_big_16_bit_png_of_zeros_decodes_in_bounded_memory(tmp_path: Path):
    """7000x7000 16-bit grey, 49 megapixels (under the 50 MP limit) in a ~100 KB file. It used to
    be converted through full-size float64 arrays: +1.3 GB. Measured in a fresh process: peak RSS
    (everything, Pillow's buffers too) and tracemalloc's peak (NumPy and Python objects)."""
    path = tmp_path / "zeros16.png"
    path.write_bytes(black_png16(7000, 7000))
    assert path.stat().st_size < 1_000_000
    code = f"""
import resource, tracemalloc
from catscanner.runtime.decoding import decode_image
data = open({str(path)!r}, "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
img = decode_image(data)
peak = tracemalloc.get_traced_memory()[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(img.mode, img.size[0], img.size[1], img.getextrema()[0][1], (after - before) // 1024, peak // 2**20)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    mode, w, h, brightest, rss_mb, traced_mb = out.stdout.split()
    assert (mode, w, h, brightest) == ("RGB", "7000", "7000", "0")
    # The RGB result alone is 196 MB (Pillow keeps 4 bytes a pixel) and the 16-bit source 98 MB.
    assert int(rss_mb) < 600, f"decoding raised peak RSS by {rss_mb} MB"
    assert int(traced_mb) < 150, f"decoding allocated {traced_mb} MB of arrays at once"


@pytest.mark.parametrize("threshold", [1.5, -0.1, float("nan")])
def test_a_threshold_outside_0_1_is_a_typed_error_before_any_photo_is_read(scanner, threshold: float):
    from catscanner.errors import BadThresholdError

    with pytest.raises(BadThresholdError, match="between 0 and 1"):
        scanner.scan("/no/such/photo.jpg", threshold=threshold)  # refused before the path is read
    with pytest.raises(BadThresholdError):
        list(scanner.scan_many(["/no/such/photo.jpg"], threshold=threshold))  # not hidden behind its io_error


def test_settings_of_the_wrong_kind_are_typed_errors_when_given(scanner, cat_photo: Path):
    """threshold="0.1" raised a bare TypeError from a comparison; Scanner(breed_threshold=5) was accepted
    and failed at the first scan; Scanner(threads=-1) was accepted (OpenVINO warned, then ONNX Runtime
    ran); scan_many("photo.jpg") scanned the path letter by letter, one io_error per character. The
    error classes are importable from ``catscanner``, as the README names them."""
    from catscanner import BadSettingError, BadThresholdError, Scanner, UnsupportedInputError

    with pytest.raises(BadThresholdError, match="a number from 0 to 1.*'0.1', a str"):
        scanner.scan(cat_photo, threshold="0.1")
    with pytest.raises(BadThresholdError, match="breed_threshold must be between 0 and 1"):
        Scanner(breed_threshold=5)
    for threads in (-1, 0, 1.5):
        with pytest.raises(BadSettingError, match="threads must be a whole number of at least 1"):
            Scanner(threads=threads)
    with pytest.raises(UnsupportedInputError, match="scan_many takes several photos.*not one str"):
        list(scanner.scan_many(str(cat_photo)))
    assert [r.is_cat for r in scanner.scan_many([str(cat_photo)])] == [True]
    assert scanner.scan(cat_photo, threshold=np.float32(0.5)).ok  # NumPy numbers are numbers
    assert Scanner(threads=np.int64(1)).scan(cat_photo).is_cat
    with Image.open(cat_photo) as img:
        a = np.asarray(img.convert("RGB"))
    assert [r.is_cat for r in scanner.scan_many(np.stack([a, a]))] == [True, True]  # (N, H, W, 3): N photos


def test_limits_are_never_printed_as_if_the_photo_met_them(scanner, cat_photo: Path):
    """An image just over 50 megapixels said "50.0 megapixels; the limit is 50 megapixels"; a threshold
    of 0.999 said "No breed reached the threshold of 100%"; an upload of 16.97 MiB printed as 16.973248."""
    from catscanner.errors import ImageTooLargeError, size_text
    from catscanner.runtime.decoding import check_size

    with pytest.raises(ImageTooLargeError, match=r"50001x1000 = 50,001,000 pixels; the limit is 50,000,000 pixels"):
        check_size(50001, 1000, 50_000_000, 32)
    with pytest.raises(ImageTooLargeError, match=r"= 56.0 megapixels; the limit is 50 megapixels"):
        check_size(8000, 7000, 50_000_000, 32)
    assert "threshold of 99.9 %" in scanner.scan(cat_photo, threshold=0.999).breeds_note
    assert (size_text(17797412), size_text(30000000), size_text(10485761)) == ("16.97 MiB", "28.6 MiB", "10.000001 MiB")
    assert size_text(int(2.5 * 2**20) + 1, beside=int(2.5 * 2**20)) == "2.500001 MiB"  # not the limit's 2.5 MiB
    with pytest.raises(ImageTooLargeError, match=r"= 50,100,001 pixels; the limit is 50,099,999 pixels"):
        check_size(50_100_001, 1, 50_099_999, 1)  # both are "50.1 megapixels"


def test_a_closed_file_object_fails_alone_in_a_batch(scanner, cat_photo: Path):
    closed = open(cat_photo, "rb")
    closed.close()
    with pytest.raises(UnreadableFileError, match="closed file"):
        scanner.scan(closed)
    bad, good = list(scanner.scan_many([closed, cat_photo]))
    assert bad.error_code == "io_error" and "open binary file" in bad.error
    assert good.ok and good.is_cat


def test_the_byte_limit_message_never_rounds_to_the_limit(tmp_path: Path, cat_photo: Path):
    """A file 1 byte over a 1000-byte limit: the message says 1000 bytes, not '0 MiB'."""
    from catscanner import Scanner

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff" * 1001)
    small = Scanner(max_file_bytes=1000)
    with pytest.raises(FileTooLargeError) as e:
        small.scan(photo)
    assert "1001 bytes" in str(e.value) and "over 1000 bytes" in str(e.value)
    with pytest.raises(FileTooLargeError, match="larger than 1000 bytes"):
        small.scan(io.BytesIO(b"\xff" * 1001))


def test_a_strip_beyond_76_to_1_gets_a_strip_shaped_input_either_way():
    from catscanner.runtime.preprocessing import frame_size

    assert frame_size(64, 6400, 75_000) == (32, 2016)
    wide = frame_size(6400, 64, 75_000)  # was a 32 x 32 square
    assert wide[1] == 32 and 2000 <= wide[0] and wide[0] * wide[1] <= 75_000 * 1.03
    assert frame_size(4032, 3024, 75_000) == (288, 224)  # ordinary photos keep their size


def test_a_photo_with_a_garbage_exif_block_is_scanned_as_stored(scanner, cat_photo: Path):
    """The pixels decode fine; only the EXIF block (APP1) is noise: that is no reason to refuse the photo."""
    data = cat_photo.read_bytes()
    exif = b"Exif\x00\x00" + b"\x137" * 40  # not a TIFF header
    app1 = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    r = scanner.scan(data[:2] + app1 + data[2:])
    expected = scanner.scan(data)
    assert r.ok and r.is_cat and (r.width, r.height) == (expected.width, expected.height)
    assert r.box == expected.box


def test_a_path_with_a_nul_byte_is_an_unreadable_file(scanner, cat_photo: Path):
    with pytest.raises(UnreadableFileError, match="Check the path"):
        scanner.scan(str(cat_photo) + "\x00.jpg")
    bad, good = scanner.scan_many([str(cat_photo) + "\x00.jpg", cat_photo])
    assert bad.error_code == "io_error" and good.ok


def _heic(img: Image.Image, **kwargs) -> bytes:
    import pillow_heif  # noqa: F401  the test extra installs it (pip install ".[heic]" for users)

    out = io.BytesIO()
    img.save(out, "HEIF", quality=90, **kwargs)
    return out.getvalue()


def test_a_heic_photo_scans_like_the_same_jpeg(scanner, cat_photo: Path, tmp_path: Path):
    """What iPhones save: a HEIC photo, upright and with EXIF orientation 6, gets the JPEG's answer;
    a folder's .heic files are found."""
    from typer.testing import CliRunner

    from catscanner.cli import app

    with Image.open(cat_photo) as img:
        rgb = img.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees clockwise for display
    for kwargs in ({}, {"exif": exif.tobytes()}):
        jpeg = io.BytesIO()
        rgb.save(jpeg, "JPEG", quality=90, **kwargs)
        want, got = scanner.scan(jpeg.getvalue()), scanner.scan(_heic(rgb, **kwargs))
        assert got.is_cat and (got.width, got.height) == (want.width, want.height)
        assert got.top_breed.breed == want.top_breed.breed
        assert all(abs(a - b) <= 6 for a, b in zip(vars(got.box).values(), vars(want.box).values())), (got.box, want.box)
    (tmp_path / "IMG_0001.HEIC").write_bytes(_heic(rgb))
    result = CliRunner().invoke(app, ["scan", "--json", "--threads", "1", str(tmp_path)])
    assert result.exit_code == 0 and '"is_cat": true' in result.stdout


def test_without_the_heic_extra_a_heic_photo_says_what_to_install(cat_photo: Path, tmp_path: Path):
    with Image.open(cat_photo) as img:
        photo = tmp_path / "photo.heic"
        photo.write_bytes(_heic(img.convert("RGB")))
    code = f"""
import sys
sys.modules["pillow_heif"] = None  # not installed
from catscanner import Scanner
from catscanner.errors import NotAnImageError
try:
    Scanner(threads=1).scan({str(photo)!r})
except NotAnImageError as e:
    print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEIC" in out.stdout and 'pip install "catscanner[heic]"' in out.stdout
