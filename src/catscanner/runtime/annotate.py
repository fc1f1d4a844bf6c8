"""Draw a :class:`~catscanner.scanner.ScanResult` onto its photo: the cat box, verdict and breeds."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from .schema import ScanResult

BOX_COLOUR = (255, 196, 0)
TEXT_COLOUR = (255, 255, 255)
BAND_COLOUR = (0, 0, 0)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def annotate(img: Image.Image, result: ScanResult) -> Image.Image:
    """A copy of ``img`` (the upright photo) with the result drawn on it."""
    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    scale = max(out.size) / 500
    font = _font(max(12, round(16 * scale)))
    if result.box:
        b = result.box
        draw.rectangle((b.left, b.top, b.right, b.bottom), outline=BOX_COLOUR, width=max(2, round(3 * scale)))
    verdict = f"cat {result.cat_probability:.0%}" if result.is_cat else f"no cat ({result.cat_probability:.0%})"
    lines = [verdict] + [f"{s.breed} {s.percent:.0f} %" for s in result.breeds]
    line_h = font.getbbox("Ag")[3] + round(4 * scale)
    band_w = max(draw.textlength(t, font=font) for t in lines) + round(12 * scale)
    draw.rectangle((0, 0, band_w, line_h * len(lines) + round(8 * scale)), fill=BAND_COLOUR)
    for i, text in enumerate(lines):
        draw.text((round(6 * scale), round(4 * scale) + i * line_h), text, fill=BOX_COLOUR if i == 0 else TEXT_COLOUR, font=font)
    return out
