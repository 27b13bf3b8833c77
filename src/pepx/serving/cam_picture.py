"""The Grad-CAM picture `pepx predict --cam` writes: the film at its own resolution (longest side capped at
`MAX_SIDE`) with the heat map blended in, an outline of the region the network saw (the rest of the film was
cropped away before the network and has no heat), a colour bar, and a caption naming the class and the box."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from pepx.serving.gradcam import Explanation

#: Longest side of the film in the picture (a larger film is scaled down; a smaller one kept as it is).
MAX_SIDE = 1024
#: The outline of the seen region: a light line on a dark one, visible on bright and dark films alike.
OUTLINE, OUTLINE_EDGE = (255, 255, 255), (0, 0, 0)


def cam_picture(exp: Explanation, label: str, alpha: float = 0.5, cmap: str = "jet",
                max_side: int = MAX_SIDE) -> Image.Image:
    """The annotated Grad-CAM picture of `exp` (RGB); `label` names the class explained (its display name)."""
    film = exp.overlay(alpha=alpha, cmap=cmap)
    scale = min(1.0, max_side / max(film.size))
    if scale < 1.0:
        film = film.resize((max(1, round(film.width * scale)), max(1, round(film.height * scale))),
                           Image.BILINEAR, reducing_gap=2.0)
    side = max(film.size)
    line = max(2, round(side / 256))
    font = ImageFont.load_default(size=max(10, round(side / 45)))
    whole = exp.seen is None or exp.seen == (0, 0, *exp.image.shape)
    if not whole:
        top, left, h, w = exp.seen
        box = [round(left * scale), round(top * scale), round((left + w) * scale) - 1,
               round((top + h) * scale) - 1]
        draw = ImageDraw.Draw(film)
        draw.rectangle(box, outline=OUTLINE_EDGE, width=line + 2)
        draw.rectangle([box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1], outline=OUTLINE, width=line)
    caption = [f"Grad-CAM for {label} ({exp.layer}): where the evidence for {label} lies"]
    caption.append("the box is what the network saw; outside it the film was cropped away (no heat)"
                   if not whole else "the network saw the whole film")
    bar = _colour_bar(film.height, font, cmap)
    pad = max(4, line * 3)
    text_h = sum(_size(font, t)[1] + pad for t in caption) + pad
    width = max(film.width + pad + bar.width, max(_size(font, t)[0] for t in caption) + 2 * pad)
    canvas = Image.new("RGB", (width, film.height + text_h), (255, 255, 255))
    canvas.paste(film, (0, 0))
    canvas.paste(bar, (film.width + pad, 0))
    draw = ImageDraw.Draw(canvas)
    y = film.height + pad
    for text in caption:
        draw.text((pad, y), text, fill=(0, 0, 0), font=font)
        y += _size(font, text)[1] + pad
    return canvas


def _size(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


def _colour_bar(height: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, cmap: str) -> Image.Image:
    """A vertical colour bar, 1 (strongest evidence) at the top and 0 at the bottom, with its ticks."""
    strip = max(8, height // 30)
    values = np.linspace(1.0, 0.0, height, dtype=np.float32)
    colours = (colormaps[cmap](values)[:, :3] * 255 + 0.5).astype(np.uint8)
    labels = ("1 high", "0.5", "0 low")
    width = strip + 4 + max(_size(font, t)[0] for t in labels) + 2
    bar = Image.new("RGB", (width, height), (255, 255, 255))
    bar.paste(Image.fromarray(np.repeat(colours[:, None, :], strip, axis=1), mode="RGB"), (0, 0))
    draw = ImageDraw.Draw(bar)
    bottom = int(font.getbbox("0 low")[3])  # the glyphs' lowest row below the point drawn at
    for text, y in zip(labels, (0, (height - bottom) // 2, height - bottom - 1), strict=True):
        draw.text((strip + 4, y), text, fill=(0, 0, 0), font=font)
    return bar


__all__ = ["MAX_SIDE", "cam_picture"]
