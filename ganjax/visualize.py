"""Image grids and plots written as PNG files."""

from __future__ import annotations

import io
import math
import os

import numpy as np
from PIL import Image

from ganjax import faults


def image_grid(images: np.ndarray, rows: int) -> np.ndarray:
    """images: [N, H, W, C] float in [-1, 1] -> one uint8 picture [rows*(H+1)+1, cols*(W+1)+1, C].

    Fills row by row; N must be a multiple of rows. A one-pixel border separates cells.
    """
    images = np.asarray(images, np.float32)
    count, height, width, channels = images.shape
    if rows <= 0 or count % rows:
        raise ValueError(f"{count} images do not fill {rows} rows; pass a multiple of rows.")
    cols = count // rows
    pixels = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    grid = np.full((rows * (height + 1) + 1, cols * (width + 1) + 1, channels), 255, np.uint8)
    for index in range(count):
        row, col = divmod(index, cols)
        top, left = 1 + row * (height + 1), 1 + col * (width + 1)
        grid[top : top + height, left : left + width] = pixels[index]
    return grid


def square_grid_rows(count: int) -> int:
    """The most rows, at most sqrt(count), that `count` images fill exactly: 100 -> 10, 20 -> 4, 7 -> 1."""
    if count <= 0:
        raise ValueError(f"A grid needs at least one image, got {count}.")
    return max(rows for rows in range(1, math.isqrt(count) + 1) if count % rows == 0)


def save_image_grid(images: np.ndarray, rows: int, path: str, scale: int = 2) -> str:
    """Writes `image_grid(images, rows)` to `path` as PNG, enlarged `scale` times; returns path. The
    file appears whole or not at all (written to path.tmp, then renamed): a run killed mid-write
    leaves no half picture."""
    grid = image_grid(images, rows)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    encoded = buffer.getvalue()
    with open(path + ".tmp", "wb") as stream:
        stream.write(encoded[: len(encoded) // 2])
        faults.maybe_kill("png_write", flush=stream)  # testing hook: dies with half the bytes written
        stream.write(encoded[len(encoded) // 2 :])
    os.replace(path + ".tmp", path)
    return path
