"""Text burned into pixels, as ultrasound machines and dose screens do.

Drawn with Pillow (a dependency of highdicom) using its built-in scalable font,
so the result is the same on every machine with the same Pillow version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def draw_lines(
    image: np.ndarray, lines: Sequence[str], *, top: int, left: int, size: int, value: int = 255
) -> np.ndarray:
    """Return a copy of a 2-D uint8 ``image`` with ``lines`` drawn from (``top``, ``left``) downwards."""
    canvas = Image.fromarray(np.ascontiguousarray(image), mode="L")
    draw = ImageDraw.Draw(canvas)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        font = ImageFont.load_default()
    y = top
    for line in lines:
        draw.text((left, y), line, fill=value, font=font)
        y += int(size * 1.3)
    return np.asarray(canvas, dtype=np.uint8).copy()
