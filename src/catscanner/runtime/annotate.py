"""Draw a :class:`~catscanner.runtime.schema.ScanResult` onto its photo: every cat's box with its
number and top breed, and a band with the verdict and each cat's breed mix."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from .schema import ScanResult

BOX_COLOURS = ((255, 196, 0), (0, 200, 255), (255, 80, 160), (120, 230, 90), (200, 140, 255))
TEXT_COLOUR = (255, 255, 255)
BAND_COLOUR = (0, 0, 0)
MIN_FONT = 8  # pixels: the band's text shrinks no further to fit a narrow photo


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def annotate(img: Image.Image, result: ScanResult) -> Image.Image:
    """A copy of ``img`` (the upright photo, the size ``result`` describes) with the result drawn on it.

    Boxes are in pixels of the photo at ``result.width`` x ``result.height``; a smaller image
    (e.g. decoded at reduced size) is drawn on with the boxes scaled to it.
    """
    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    sx = out.width / (result.width or out.width)
    sy = out.height / (result.height or out.height)
    scale = max(out.size) / 500
    font = _font(max(12, round(16 * scale)))
    line_h = font.getbbox("Ag")[3] + round(4 * scale)
    boxes, labels = [], []
    for i, cat in enumerate(result.cats):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        b = cat.box
        rect = (b.left * sx, b.top * sy, b.right * sx, b.bottom * sy)
        draw.rectangle(rect, outline=colour, width=max(2, round(3 * scale)))
        label = f"{i + 1}" + (f" {cat.breeds[0].breed}" if cat.breeds else "")
        w = draw.textlength(label, font=font) + round(8 * scale)
        x, y = max(0, min(rect[0], out.width - w)), max(0, rect[1] - line_h)  # inside the photo
        draw.rectangle((x, y, x + w, y + line_h), fill=colour)
        boxes.append(rect)
        labels.append((x, y, x + w, y + line_h))
        draw.text((x + round(4 * scale), y + round(2 * scale)), label, fill=BAND_COLOUR, font=font)

    if result.is_cat:
        verdict = f"{len(result.cats)} cat{'s' if len(result.cats) != 1 else ''} ({result.cat_probability:.0%})"
    elif result.wild_cat:
        verdict = f"wild cat: {result.wild_cat} (not a house cat)"
    else:
        verdict = f"no cat ({result.cat_probability:.0%})"
    lines = [(verdict, BOX_COLOURS[0])]
    for i, cat in enumerate(result.cats):
        mix = ", ".join(f"{s.breed} {s.percent:.0f} %" for s in cat.breeds) or "breed unknown"
        lines.append((f"{i + 1}: {mix}", BOX_COLOURS[i % len(BOX_COLOURS)]))
    band_font, band_line, shown = fit_band(draw, [t for t, _ in lines], out.size, scale)
    lines = lines[:shown]
    band_w = min(out.width, max(draw.textlength(t, font=band_font) for t, _ in lines) + round(12 * scale))
    band_h = band_line * len(lines) + round(8 * scale)
    left, top = _band_corner(out.size, (band_w, band_h), boxes, labels)
    draw.rectangle((left, top, left + band_w, top + band_h), fill=BAND_COLOUR)
    for i, (text, colour) in enumerate(lines):
        draw.text((left + round(6 * scale), top + round(4 * scale) + i * band_line), text,
                  fill=colour if i == 0 else TEXT_COLOUR, font=band_font)
    return out


def fit_band(draw: ImageDraw.ImageDraw, texts: list[str], size: tuple[int, int], scale: float
             ) -> tuple[ImageFont.ImageFont, int, int]:
    """(font, line height, lines shown) of the verdict band: its text fits the photo's width (a
    smaller font, down to ``MIN_FONT``) and its lines at most half the photo's height (else only the
    first, the verdict), so that it neither runs off the photo nor hides the cats it describes."""
    width, height = size
    font_size = max(MIN_FONT, round(16 * scale))
    while True:
        font = _font(font_size)
        line_h = font.getbbox("Ag")[3] + max(2, round(font_size / 4))  # a quarter of the font between lines
        text_w = max(draw.textlength(t, font=font) for t in texts) + round(12 * scale)
        if text_w <= width or font_size <= MIN_FONT:
            break
        font_size = max(MIN_FONT, min(font_size - 1, int(font_size * width / text_w)))
    shown = len(texts) if line_h * len(texts) + round(8 * scale) <= height / 2 else 1
    return font, line_h, shown


Rect = tuple[float, float, float, float]


def _band_corner(size: tuple[int, int], band: tuple[float, float], boxes: list[Rect], labels: list[Rect]) -> tuple[float, float]:
    """Top-left of the verdict band: the corner where it hides the least of the cats' boxes and labels,
    each counted as the share of it hidden (a small cat hidden whole is worse than a large one grazed);
    bottom-left on a tie. A band larger than the photo starts at its left or top edge."""
    (W, H), (w, h) = size, band
    right, bottom = max(0.0, W - w), max(0.0, H - h)
    corners = [(0.0, bottom), (right, bottom), (0.0, 0.0), (right, 0.0)]

    def hidden_share(x: float, y: float, rect: Rect) -> float:
        l, t, r, b = rect
        area = max(1.0, (r - l) * (b - t))
        return max(0.0, min(x + w, r) - max(x, l)) * max(0.0, min(y + h, b) - max(y, t)) / area

    def hidden(corner: tuple[float, float]) -> float:
        return sum(hidden_share(*corner, r) for r in boxes + labels)
    return min(corners, key=hidden)  # min keeps the first of equals
