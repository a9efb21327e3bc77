"""Image repair: damage images, repair them (none, mean, classic, inversion), score the repair.

    from ganjax.repair import damage, repair, inpaint, damaged_region
    damaged, mask = damage("centre:0.5", jax.random.key(0), images)     # images [N, H, W, C] in [-1, 1]
    repaired = repair("inversion", damaged, mask, jax.random.key(1), damage="centre:0.5",
                      generator=ganjax.load_generator(workdir))
    result = inpaint(generator, damaged, mask, key, steps=500, restarts=4)  # result.images, .labels, ...
    scores = ganjax.metrics.image_quality.image_quality(images, repaired, damaged_region("centre:0.5", mask))

Damages live in the module ganjax/repair/damage.py (names in `ganjax.names.DAMAGES`; import from it
with `from ganjax.repair.damage import ...`: the package's attribute `damage` is the function),
repairs without a generator in ganjax/repair/classic.py, generator inversion (Yeh et al. 2017) in
ganjax/repair/inversion.py, and the image-quality metrics in ganjax/metrics/image_quality.py.
From the command line: `python -m ganjax.repair --workdir GAN_WORKDIR --damage centre:0.5 --out DIR`.
"""

from __future__ import annotations

import jax
import numpy as np

from ganjax.names import DAMAGES, NOISE_DAMAGES, REPAIR_METHODS, check_repair_method, parse_damage
from ganjax.repair.classic import TV_WEIGHT, classic_repair, classic_settings, mean_fill, no_repair
from ganjax.repair.damage import (
    DAMAGE_FUNCTIONS,
    MISSING_VALUE,
    centre_block,
    check_images_and_mask,
    check_known_pixels,
    damage,
    damage_function,
    damaged_region,
    gaussian_noise,
    is_noise,
    missing_half,
    missing_pixels,
    random_blocks,
    salt_and_pepper,
)
from ganjax.repair.inversion import (
    DEFAULT_PRIOR_WEIGHT,
    DEFAULT_RESTARTS,
    DEFAULT_STEPS,
    IMPORTANCE_WINDOW,
    InpaintResult,
    denoise,
    importance_weights,
    inpaint,
    inversion_settings,
    poisson_blend,
)


def repair(method: str, damaged, mask, key: jax.Array, *, damage: str, generator=None, labels=None,
           **options) -> np.ndarray:
    """Repaired images [N, H, W, C] float32 in [-1, 1] of `damaged` [N, H, W, C] (mask [N, H, W],
    1 = known) by `method`, one of REPAIR_METHODS, for the damage `damage` that made them (e.g.
    "centre:0.5"; a noise damage is denoised, any other inpainted).

    generator: a `ganjax.sample.TrainedGenerator`, for "inversion" only; labels: [N] classes for
    inversion (None: try every class). options: settings of the method: `classic_repair`'s tv_weight,
    or `inpaint` / `denoise`'s steps, restarts, prior_weight, ... `key` is used by inversion only.
    """
    check_repair_method(method)
    if method != "inversion" and labels is not None:
        raise ValueError(f"labels are for the inversion repair only; drop them for {method!r}.")
    if method == "none":
        return no_repair(damaged, mask)
    if method == "mean":
        return mean_fill(damaged, mask)
    if method == "classic":
        return classic_repair(damaged, mask, damage, **options)
    if generator is None:
        raise ValueError("The inversion repair needs a generator: pass generator=ganjax.load_generator(GAN_WORKDIR).")
    if is_noise(damage):
        damaged, _ = check_images_and_mask(damaged, mask)
        return denoise(generator, damaged, key, labels=labels, **options).images
    return inpaint(generator, damaged, mask, key, labels=labels, **options).images


__all__ = [
    "DAMAGES",
    "DAMAGE_FUNCTIONS",
    "DEFAULT_PRIOR_WEIGHT",
    "DEFAULT_RESTARTS",
    "DEFAULT_STEPS",
    "IMPORTANCE_WINDOW",
    "InpaintResult",
    "MISSING_VALUE",
    "NOISE_DAMAGES",
    "REPAIR_METHODS",
    "TV_WEIGHT",
    "centre_block",
    "check_images_and_mask",
    "check_known_pixels",
    "classic_repair",
    "classic_settings",
    "damage",
    "damage_function",
    "damaged_region",
    "denoise",
    "gaussian_noise",
    "importance_weights",
    "inpaint",
    "inversion_settings",
    "is_noise",
    "mean_fill",
    "missing_half",
    "missing_pixels",
    "no_repair",
    "parse_damage",
    "poisson_blend",
    "random_blocks",
    "repair",
    "salt_and_pepper",
]
