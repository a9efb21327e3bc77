"""Image augmentation in pure JAX, vectorised over the batch, jit-able, a pure function of
(key, images):

  augment       classic augmentation for classifiers: random shifts (pad + random crop), flips;
  diff_augment  DiffAugment for GAN training (Zhao et al. 2020, "Differentiable Augmentation
                for Data-Efficient GAN Training"): the same random, differentiable transforms
                applied to real and generated images before the discriminator, so that D
                cannot memorise a small training set (for example a long tail's rare classes).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from ganjax.names import AUGMENT_PADDINGS as PADDINGS
from ganjax.names import DIFF_AUGMENT_OPS, parse_diff_augment  # noqa: F401 (re-exported)

# DiffAugment's transforms, in the order diff_augment applies them (the paper's order).


class Augmentation(NamedTuple):
    """What `augment` does; hashable, so it can parametrise a compiled step.

    max_shift: pixels of padding on every side before a random crop back to the input size,
      so each image moves by up to max_shift pixels in each direction (0: no shift).
    flip: random horizontal flips with probability 1/2. Right for Fashion-MNIST or CIFAR,
      wrong for digits (a mirrored 2 or 7 is not a digit).
    padding: "reflect" mirrors the border; "constant" pads with -1 (black in [-1, 1]).
    """

    max_shift: int = 2
    flip: bool = False
    padding: str = "constant"


def check_augmentation(kind: Augmentation) -> Augmentation:
    """Returns `kind` after checking its fields; raises ValueError naming the bad one."""
    if kind.max_shift < 0:
        raise ValueError(f"Augmentation max_shift must be >= 0, got {kind.max_shift}; set experiment.augment_shift.")
    if kind.padding not in PADDINGS:
        raise ValueError(f"Augmentation padding {kind.padding!r} is unknown; choose one of {PADDINGS}.")
    return kind


def augment(key: jax.Array, images: jnp.ndarray, kind: Augmentation) -> jnp.ndarray:
    """Randomly shifted (and, if kind.flip, mirrored) copies of `images`.

    Args:
      key: randomness for this batch.
      images: [batch, height, width, channels] float32 in [-1, 1].
      kind: see `Augmentation`.

    Returns:
      [batch, height, width, channels] float32 in [-1, 1]; each image transformed independently.
    """
    chex.assert_rank(images, 4)
    batch = images.shape[0]
    shift_key, flip_key = jax.random.split(key)
    if kind.max_shift > 0:
        fill = None if kind.padding == "reflect" else -1.0
        images = random_shift(shift_key, images, kind.max_shift, fill)
    if kind.flip:
        flips = jax.random.bernoulli(flip_key, 0.5, (batch, 1, 1, 1))
        images = jnp.where(flips, images[:, :, ::-1, :], images)
    return images


def random_shift(key: jax.Array, images: jnp.ndarray, max_shift: int, fill: float | None) -> jnp.ndarray:
    """Each image of [B, H, W, C] moved by its own random (dy, dx) in [-max_shift, max_shift]^2;
    the uncovered border is `fill`, or mirrored when fill is None. Differentiable in `images`."""
    batch, height, width, channels = images.shape
    widths = ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0))
    if fill is None:
        padded = jnp.pad(images, widths, mode="reflect")
    else:
        padded = jnp.pad(images, widths, mode="constant", constant_values=fill)
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * max_shift + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    return jax.vmap(crop)(padded, offsets)


def diff_augment(key: jax.Array, images: jnp.ndarray, ops: tuple[str, ...]) -> jnp.ndarray:
    """DiffAugment (Zhao et al. 2020, the reference implementation's transforms and magnitudes)
    of images [B, H, W, C] in [-1, 1]; every image gets its own random parameters.

      color:       brightness + U(-0.5, 0.5); saturation x U(0, 2) around the channel mean
                   (colour images only); contrast x U(0.5, 1.5) around the image mean;
      translation: a shift of up to 1/8 of the size in each direction, zero-filled;
      cutout:      a square of half the size, at a random centre, set to zero.

    Gradients flow through every transform, so the generator learns from D's view of its
    augmented samples. ops = () returns `images` unchanged.
    """
    chex.assert_rank(images, 4)
    batch, height, width, channels = images.shape
    color_key, translation_key, cutout_key = jax.random.split(key, 3)
    if "color" in ops:
        brightness_key, saturation_key, contrast_key = jax.random.split(color_key, 3)
        images = images + (jax.random.uniform(brightness_key, (batch, 1, 1, 1), images.dtype) - 0.5)
        if channels > 1:
            mean = jnp.mean(images, axis=3, keepdims=True)
            images = (images - mean) * jax.random.uniform(saturation_key, (batch, 1, 1, 1), images.dtype, 0.0, 2.0) + mean
        mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
        images = (images - mean) * jax.random.uniform(contrast_key, (batch, 1, 1, 1), images.dtype, 0.5, 1.5) + mean
    if "translation" in ops:
        images = random_shift(translation_key, images, int(round(min(height, width) * 0.125)), 0.0)
    if "cutout" in ops:
        images = images * cutout_mask(cutout_key, batch, height, width, images.dtype)
    return images


def cutout_mask(key: jax.Array, batch: int, height: int, width: int, dtype) -> jnp.ndarray:
    """[B, H, W, 1] of ones with a zero square of side ~half the image per image, its centre
    uniform over the image (the square is clipped at the border)."""
    size_y, size_x = int(round(height * 0.5)), int(round(width * 0.5))
    y_key, x_key = jax.random.split(key)
    centre_y = jax.random.randint(y_key, (batch, 1, 1), 0, height + (1 - size_y % 2))
    centre_x = jax.random.randint(x_key, (batch, 1, 1), 0, width + (1 - size_x % 2))
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside_y = (rows >= centre_y - size_y // 2) & (rows < centre_y - size_y // 2 + size_y)
    inside_x = (cols >= centre_x - size_x // 2) & (cols < centre_x - size_x // 2 + size_x)
    return jnp.where(inside_y & inside_x, 0.0, 1.0).astype(dtype)[..., None]
