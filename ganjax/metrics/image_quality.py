"""Image quality of a repair against the clean image: PSNR and SSIM per image, over the whole image
and over a region (the damaged pixels), from scikit-image.

Images are [N, H, W, C] float in ganjax's range [-1, 1], so the data range is DATA_RANGE = 2
(PSNR = 10 log10(2^2 / MSE); the same images on the [0, 1] scale give the same PSNR and SSIM).
SSIM follows Wang et al. 2004 (IEEE TIP 13, 600-612), as scikit-image's docs say to match it: an
11x11 Gaussian window of sigma 1.5, population covariances, K1 = 0.01, K2 = 0.03, averaged over the
channels. Both the whole image's SSIM and a region's are means of scikit-image's full SSIM map
(`full=True`; windows at the border reflect the image), over all pixels or over the region's. (Its
own mean crops the 5 border pixels, which leaves only the centre 6x6 of a 16x16 image.) Images need a
side of at least 11 pixels.

A region is [N, H, W] bool, True where a pixel is scored (`ganjax.repair.damaged_region`). An image
whose region is empty scores NaN there; identical pixels give a PSNR of +inf.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

DATA_RANGE = 2.0
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # what scikit-image's Gaussian weights of sigma 1.5 span: 2 * int(3.5 sigma + 0.5) + 1


def _check(reference, images, region) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    reference = np.asarray(reference, np.float64)
    images = np.asarray(images, np.float64)
    if reference.ndim != 4 or reference.shape != images.shape:
        raise ValueError(f"Image quality compares images [N, H, W, C] of one shape, got {reference.shape} "
                         f"and {images.shape}.")
    if region is not None:
        region = np.asarray(region, bool)
        if region.shape != reference.shape[:3]:
            raise ValueError(f"The scored region has shape {region.shape}; pass [N, H, W] = {reference.shape[:3]}.")
    return reference, images, region


def psnr(reference, images, region=None) -> np.ndarray:
    """[N] PSNR in dB of `images` against `reference` ([N, H, W, C] in [-1, 1]) over all pixels, or
    over the pixels (all channels) of `region` [N, H, W] bool."""
    reference, images, region = _check(reference, images, region)
    scores = np.full(len(reference), np.nan)
    for index, (clean, repaired) in enumerate(zip(reference, images)):
        if region is not None:
            if not region[index].any():
                continue
            clean, repaired = clean[region[index]], repaired[region[index]]
        if np.array_equal(clean, repaired):
            scores[index] = np.inf  # scikit-image would divide by zero
        else:
            scores[index] = peak_signal_noise_ratio(clean, repaired, data_range=DATA_RANGE)
    return scores


def _ssim_map(clean: np.ndarray, repaired: np.ndarray) -> np.ndarray:
    """[H, W] SSIM map of two images [H, W, C], averaged over the channels."""
    if min(clean.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (its Gaussian window), "
                         f"got {clean.shape[0]}x{clean.shape[1]}; set config.data.image_size >= {SSIM_WINDOW}.")
    _, full = structural_similarity(
        clean, repaired, data_range=DATA_RANGE, channel_axis=-1, gaussian_weights=True, sigma=SSIM_SIGMA,
        use_sample_covariance=False, full=True,
    )
    return full.mean(axis=-1)


def ssim(reference, images, region=None) -> np.ndarray:
    """[N] SSIM of `images` against `reference` ([N, H, W, C] in [-1, 1]): the mean of the SSIM map
    over all pixels, or over `region` [N, H, W] bool."""
    reference, images, region = _check(reference, images, region)
    scores = np.full(len(reference), np.nan)
    for index, (clean, repaired) in enumerate(zip(reference, images)):
        full = _ssim_map(clean, repaired)
        if region is None:
            scores[index] = float(full.mean())
        elif region[index].any():
            scores[index] = float(full[region[index]].mean())
    return scores


def image_quality(reference, images, region) -> dict[str, np.ndarray]:
    """{"psnr", "ssim", "psnr_region", "ssim_region"}: [N] scores of `images` against `reference`
    over the whole image and over `region` [N, H, W] bool (e.g. the damaged pixels)."""
    return {
        "psnr": psnr(reference, images),
        "ssim": ssim(reference, images),
        "psnr_region": psnr(reference, images, region),
        "ssim_region": ssim(reference, images, region),
    }


def summarize(scores) -> dict[str, float | int]:
    """{"mean", "std", "count"} of [N] scores over the images that have one (not NaN); the mean is
    +inf if an image scored +inf (a PSNR of identical pixels)."""
    scores = np.asarray(scores, np.float64)
    scored = scores[~np.isnan(scores)]
    if not scored.size:
        return {"mean": float("nan"), "std": float("nan"), "count": 0}
    finite = bool(np.all(np.isfinite(scored)))
    return {"mean": float(np.mean(scored)), "std": float(np.std(scored)) if finite else float("nan"),
            "count": int(scored.size)}
