"""Image damage: pure functions `(key, images, severity) -> (damaged, mask)`, named in configs and on
the command line as "NAME:SEVERITY" (`ganjax.names.parse_damage`).

    images:  [N, H, W, C] float32 in [-1, 1] (ganjax's model range)
    damaged: [N, H, W, C] float32 in [-1, 1]
    mask:    [N, H, W] float32, 1 = a known pixel (all its channels), 0 = a missing one

Missing pixels are set to MISSING_VALUE (0, mid-grey), so that an unrepaired hole shows in a grid.

Damages (severity s strictly between 0 and 1):
  centre:s      a centred square hole of side round(s * side) (at least 1, at most side - 1);
  blocks:s      round(16 s) of the 16 cells of a 4x4 grid go missing (at least 1, at most 15), a
                random choice per image;
  pixels:s      round(s H W) pixels go missing (at least 1, at most H W - 1), a random choice per image;
  noise:s       additive Gaussian noise of std s on the [0, 1] pixel scale, i.e. 2 s on ganjax's
                [-1, 1] scale, clipped to [-1, 1] (a damaged image is still an image);
  saltpepper:s  each pixel, with probability s, set to white (+1) or black (-1) with equal odds;
  half:SIDE     the left, right, top or bottom half goes missing (the smaller half of an odd side).
Exact counts (not a probability per pixel or block) leave every image of a mask damage with a known
and a missing pixel.

The noise damages (`ganjax.names.NOISE_DAMAGES`) change pixels where a repair is not told, so their
mask is all ones: every pixel is "known", if noisy; the region their damage is scored on is then the
whole image (`damaged_region`). Random damages draw each image's damage from its own key,
`jax.random.split(key, N)[i]`, so an image's damage depends on the key and its index only.
All functions are jax.numpy, jit- and vmap-friendly, with the severity static.
"""

from __future__ import annotations

import functools
from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ganjax.names import DAMAGES, HALF_SIDES, NOISE_DAMAGES, parse_damage

MISSING_VALUE = 0.0
GRID_CELLS = 4  # blocks: the image is cut into a GRID_CELLS x GRID_CELLS grid

Damage = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _per_image(damage_one: Callable, key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Applies `damage_one(key, image [H, W, C]) -> (damaged, mask [H, W])` to each image with its own key."""
    chex.assert_rank(images, 4)
    return jax.vmap(damage_one)(jax.random.split(key, images.shape[0]), images)


def _apply_mask(images: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    mask = mask.astype(jnp.float32)
    damaged = jnp.where(mask[..., None] > 0, images, MISSING_VALUE).astype(jnp.float32)
    return damaged, mask


def centre_block(key: jax.Array, images: jax.Array, severity: float) -> tuple[jax.Array, jax.Array]:
    """A centred hole of round(severity * H) x round(severity * W) pixels (at least 1, at most the
    side less 1); `key` is unused."""
    del key
    chex.assert_rank(images, 4)
    count, height, width, _ = images.shape
    block_height, block_width = (int(np.clip(round(severity * side), 1, side - 1)) for side in (height, width))
    top, left = (height - block_height) // 2, (width - block_width) // 2
    rows, columns = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    hole = (rows >= top) & (rows < top + block_height) & (columns >= left) & (columns < left + block_width)
    return _apply_mask(images, jnp.broadcast_to(~hole, (count, height, width)))


def random_blocks(key: jax.Array, images: jax.Array, severity: float) -> tuple[jax.Array, jax.Array]:
    """round(16 * severity) (at least 1, at most 15) of the cells of a 4x4 grid go missing, a
    random choice per image; the cells of a side not divisible by 4 differ by one pixel."""
    cells = GRID_CELLS * GRID_CELLS
    num_missing = int(np.clip(round(severity * cells), 1, cells - 1))

    def damage_one(key, image):
        height, width, _ = image.shape
        missing_cells = jnp.zeros((cells,), bool).at[jax.random.permutation(key, cells)[:num_missing]].set(True)
        cell_rows = (jnp.arange(height) * GRID_CELLS) // height
        cell_columns = (jnp.arange(width) * GRID_CELLS) // width
        missing = missing_cells[cell_rows[:, None] * GRID_CELLS + cell_columns[None, :]]
        return _apply_mask(image, ~missing)

    return _per_image(damage_one, key, images)


def missing_pixels(key: jax.Array, images: jax.Array, severity: float) -> tuple[jax.Array, jax.Array]:
    """round(severity * H * W) pixels (at least 1, at most H * W - 1) go missing, a random choice per image."""

    def damage_one(key, image):
        height, width, _ = image.shape
        num_missing = int(np.clip(round(severity * height * width), 1, height * width - 1))
        missing = jnp.zeros((height * width,), bool).at[
            jax.random.permutation(key, height * width)[:num_missing]].set(True)
        return _apply_mask(image, ~missing.reshape(height, width))

    return _per_image(damage_one, key, images)


def gaussian_noise(key: jax.Array, images: jax.Array, severity: float) -> tuple[jax.Array, jax.Array]:
    """images + N(0, (2 severity)^2) per pixel and channel, clipped to [-1, 1]: std `severity` on the
    [0, 1] pixel scale is 2 * severity on ganjax's [-1, 1] scale. Mask all ones."""

    def damage_one(key, image):
        noisy = image + 2.0 * severity * jax.random.normal(key, image.shape, jnp.float32)
        return jnp.clip(noisy, -1.0, 1.0), jnp.ones(image.shape[:2], jnp.float32)

    return _per_image(damage_one, key, images)


def salt_and_pepper(key: jax.Array, images: jax.Array, severity: float) -> tuple[jax.Array, jax.Array]:
    """Each pixel (all its channels), with probability `severity`, set to +1 (salt) or -1 (pepper)
    with equal odds. Mask all ones: a repair is not told which pixels were hit."""

    def damage_one(key, image):
        hit_key, salt_key = jax.random.split(key)
        hit = jax.random.bernoulli(hit_key, severity, image.shape[:2])[..., None]
        salt = jax.random.bernoulli(salt_key, 0.5, image.shape[:2])[..., None]
        damaged = jnp.where(hit, jnp.where(salt, 1.0, -1.0), image).astype(jnp.float32)
        return damaged, jnp.ones(image.shape[:2], jnp.float32)

    return _per_image(damage_one, key, images)


def missing_half(key: jax.Array, images: jax.Array, side: str) -> tuple[jax.Array, jax.Array]:
    """The `side` half ("left", "right", "top", "bottom") goes missing; for an odd side the
    missing half is the smaller one. `key` is unused."""
    del key
    if side not in HALF_SIDES:
        raise ValueError(f"The missing half must be one of {', '.join(HALF_SIDES)}, got {side!r}.")
    chex.assert_rank(images, 4)
    count, height, width, _ = images.shape
    rows, columns = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    hole = {
        "left": columns < width // 2,
        "right": columns >= width - width // 2,
        "top": rows < height // 2,
        "bottom": rows >= height - height // 2,
    }[side]
    return _apply_mask(images, jnp.broadcast_to(~hole, (count, height, width)))


DAMAGE_FUNCTIONS = {
    "centre": centre_block,
    "blocks": random_blocks,
    "pixels": missing_pixels,
    "noise": gaussian_noise,
    "saltpepper": salt_and_pepper,
    "half": missing_half,
}
assert tuple(DAMAGE_FUNCTIONS) == DAMAGES


def damage_function(spec: str) -> Damage:
    """The pure, jitted `(key, images) -> (damaged, mask)` that the damage `spec` (e.g. "centre:0.5")
    names; ValueError for an unknown name or a severity out of range (`parse_damage`)."""
    name, severity = parse_damage(spec)
    return _jitted_damage(name, severity)


@functools.lru_cache(maxsize=None)
def _jitted_damage(name: str, severity: float | str) -> Damage:
    function = DAMAGE_FUNCTIONS[name]
    return jax.jit(lambda key, images: function(key, images, severity))


def damage(spec: str, key: jax.Array, images) -> tuple[jax.Array, jax.Array]:
    """(damaged [N, H, W, C], mask [N, H, W]) of `images` [N, H, W, C] in [-1, 1] under the damage
    `spec`, e.g. damage("centre:0.5", key, images)."""
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4:
        raise ValueError(f"Images to damage must be [N, H, W, C], got shape {images.shape}; "
                         "add a batch axis for one image (images[None]).")
    return damage_function(spec)(key, images)


def damage_mixture(key: jax.Array, images: jax.Array, specs: tuple[str, ...], clean_fraction: float) -> jax.Array:
    """images [B, H, W, C] in [-1, 1] with each image, independently, kept clean with probability
    `clean_fraction` and otherwise damaged by one of `specs` chosen uniformly: training data for a
    classifier or an encoder that must cope with the damages. Pure and jit-friendly (specs static)."""
    choice_key, *keys = jax.random.split(key, len(specs) + 1)
    versions = jnp.stack([images] + [damage_function(spec)(k, images)[0] for spec, k in zip(specs, keys)])
    draw = jax.random.uniform(choice_key, (images.shape[0],))
    damaged_choice = jnp.floor((draw - clean_fraction) / (1.0 - clean_fraction) * len(specs)).astype(jnp.int32)
    which = jnp.where(draw < clean_fraction, 0, 1 + jnp.clip(damaged_choice, 0, len(specs) - 1))
    return versions[which, jnp.arange(images.shape[0])]


def is_noise(spec: str) -> bool:
    """Whether the damage `spec` is a noise damage (mask all ones, scored on the whole image)."""
    return parse_damage(spec)[0] in NOISE_DAMAGES


def damaged_region(spec: str, mask) -> np.ndarray:
    """[N, H, W] bool: the pixels the damage `spec` changed, where the metrics score a repair's
    damaged region: the missing pixels (mask == 0), or every pixel for a noise damage."""
    mask = np.asarray(mask)
    return np.ones(mask.shape, bool) if is_noise(spec) else mask == 0


def check_images_and_mask(images, mask) -> tuple[np.ndarray, np.ndarray]:
    """(images, mask) as float32 numpy arrays after checking them at a repair's edge: images
    [N, H, W, C] finite, mask [N, H, W] of zeros and ones (1 = known). ValueError otherwise."""
    images = np.asarray(images, np.float32)
    mask = np.asarray(mask)
    if images.ndim != 4:
        raise ValueError(f"Images to repair must be [N, H, W, C] in [-1, 1], got shape {images.shape}; "
                         "add a batch axis for one image (images[None]).")
    if mask.shape != images.shape[:3]:
        hint = " (drop its channel axis: mask[..., 0])" if mask.shape == (*images.shape[:3], 1) else ""
        raise ValueError(
            f"The mask has shape {mask.shape} but the images {images.shape}; pass a mask [N, H, W] = "
            f"{images.shape[:3]} with 1 at the known pixels{hint}."
        )
    if not np.all(np.isfinite(images)):
        raise ValueError("The images to repair hold NaN or inf; pass finite pixels in [-1, 1].")
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("The mask must hold only 0 (missing) and 1 (known); threshold it first, e.g. mask > 0.5.")
    return images, mask.astype(np.float32)


def check_known_pixels(mask, method: str) -> None:
    """ValueError naming the images [N] of `mask` [N, H, W] that have no known pixel: `method` fills a
    hole from the known pixels, and cannot work from nothing."""
    empty = np.flatnonzero(~np.asarray(mask, bool).reshape(len(mask), -1).any(axis=1))
    if empty.size:
        shown = ", ".join(str(index) for index in empty[:10]) + (" ..." if empty.size > 10 else "")
        raise ValueError(
            f"{empty.size} image(s) (index {shown}) have every pixel missing; the {method} repair fills the "
            "missing pixels from the known ones and cannot work from nothing. Damage less (severity < 1) "
            "or leave those images out."
        )
