"""Repairs without a generator: none, mean fill, and classic repair from scikit-image.

    damaged: [N, H, W, C] float32 in [-1, 1]; mask: [N, H, W], 1 = known pixel
    -> repaired [N, H, W, C] float32 in [-1, 1]; known pixels kept exactly (masks), all pixels
       repaired (noise damages, whose mask is all ones)

- none: the damaged images as they are.
- mean: each missing pixel takes the mean of the same image's known pixels, per channel (not the
  training set's mean: the repair sees only the damaged image). A noise damage's mask has no missing
  pixel, so mean returns its images unchanged.
- classic (`classic_repair`), chosen by the damage:
  * masks (centre, blocks, pixels, half): scikit-image's `inpaint_biharmonic` (Damelin & Hoang 2018),
    each channel on its own;
  * noise: `denoise_tv_chambolle` (Chambolle 2004) with weight TV_WEIGHT = 0.1 (scikit-image's
    default) on the [0, 1] pixel scale, channels together;
  * saltpepper: a 3x3 median filter (`skimage.filters.median`) per channel, the textbook filter for
    impulse noise; the repair is not told which pixels were hit, as for inversion.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import median
from skimage.restoration import denoise_tv_chambolle, inpaint_biharmonic

from ganjax.names import parse_damage
from ganjax.repair.damage import check_images_and_mask, check_known_pixels

TV_WEIGHT = 0.1
MEDIAN_SIZE = 3


def no_repair(damaged, mask) -> np.ndarray:
    """The damaged images [N, H, W, C] unchanged."""
    damaged, _ = check_images_and_mask(damaged, mask)
    return damaged


def mean_fill(damaged, mask) -> np.ndarray:
    """Missing pixels set to the per-channel mean of the same image's known pixels."""
    damaged, mask = check_images_and_mask(damaged, mask)
    check_known_pixels(mask, "mean")
    known = mask[..., None]
    means = np.sum(damaged * known, axis=(1, 2), keepdims=True) / np.sum(known, axis=(1, 2), keepdims=True)
    return np.where(known > 0, damaged, means).astype(np.float32)


def biharmonic_inpaint(damaged, mask) -> np.ndarray:
    """Missing pixels filled by scikit-image's biharmonic inpainting; known pixels kept exactly."""
    damaged, mask = check_images_and_mask(damaged, mask)
    check_known_pixels(mask, "biharmonic")
    repaired = damaged.copy()
    for index in np.flatnonzero((mask == 0).reshape(len(mask), -1).any(axis=1)):
        filled = inpaint_biharmonic(damaged[index], mask[index] == 0, channel_axis=-1)
        repaired[index] = np.where(mask[index][..., None] > 0, damaged[index], filled)
    return repaired


def tv_denoise(noisy, weight: float = TV_WEIGHT) -> np.ndarray:
    """Chambolle's total-variation denoising of each image [N, H, W, C] in [-1, 1], with `weight` on
    the [0, 1] pixel scale (larger: smoother)."""
    noisy, _ = check_images_and_mask(noisy, np.ones(np.shape(noisy)[:3]))
    if weight <= 0:
        raise ValueError(f"The TV denoising weight must be positive, got {weight}.")
    unit = (noisy + 1.0) / 2.0
    denoised = np.stack([denoise_tv_chambolle(image, weight=weight, channel_axis=-1) for image in unit])
    return np.clip(denoised * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)


def median_denoise(noisy, size: int = MEDIAN_SIZE) -> np.ndarray:
    """Each channel of each image [N, H, W, C] through a size x size median filter."""
    noisy, _ = check_images_and_mask(noisy, np.ones(np.shape(noisy)[:3]))
    footprint = np.ones((size, size, 1), bool)
    return np.stack([median(image, footprint=footprint) for image in noisy]).astype(np.float32)


def classic_repair(damaged, mask, damage: str, *, tv_weight: float = TV_WEIGHT) -> np.ndarray:
    """The classic repair of images under the damage `damage` (e.g. "centre:0.5"; module docstring)."""
    name, _ = parse_damage(damage)
    if name == "noise":
        damaged, _ = check_images_and_mask(damaged, mask)
        return tv_denoise(damaged, tv_weight)
    if name == "saltpepper":
        damaged, _ = check_images_and_mask(damaged, mask)
        return median_denoise(damaged)
    return biharmonic_inpaint(damaged, mask)


def classic_settings(damage: str, tv_weight: float = TV_WEIGHT) -> dict:
    """What `classic_repair` does for `damage`, for a record of the run."""
    name, _ = parse_damage(damage)
    if name == "noise":
        return {"algorithm": "skimage.restoration.denoise_tv_chambolle", "weight": tv_weight,
                "weight_scale": "[0, 1] pixels"}
    if name == "saltpepper":
        return {"algorithm": "skimage.filters.median", "footprint": f"{MEDIAN_SIZE}x{MEDIAN_SIZE} per channel"}
    return {"algorithm": "skimage.restoration.inpaint_biharmonic", "channels": "each on its own"}
