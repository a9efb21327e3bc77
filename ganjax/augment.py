"""Classic image augmentation in pure JAX: random shifts (pad + random crop) and flips.

Vectorised over the batch and jit-able; a pure function of (key, images).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

PADDINGS = ("reflect", "constant")


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
    batch, height, width, channels = images.shape
    shift_key, flip_key = jax.random.split(key)
    if kind.max_shift > 0:
        pad = kind.max_shift
        widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
        if kind.padding == "reflect":
            padded = jnp.pad(images, widths, mode="reflect")
        else:
            padded = jnp.pad(images, widths, mode="constant", constant_values=-1.0)
        offsets = jax.random.randint(shift_key, (batch, 2), 0, 2 * pad + 1)

        def crop(image, offset):
            return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

        images = jax.vmap(crop)(padded, offsets)
    if kind.flip:
        flips = jax.random.bernoulli(flip_key, 0.5, (batch, 1, 1, 1))
        images = jnp.where(flips, images[:, :, ::-1, :], images)
    return images
