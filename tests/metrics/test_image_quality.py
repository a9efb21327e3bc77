import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ganjax.metrics.image_quality import DATA_RANGE, image_quality, psnr, ssim, summarize

# Wang et al. 2004's constants for images of data range 2 ([-1, 1]).
C1, C2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2


def _pair(shape=(3, 16, 16, 1), seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(-1, 1, shape)
    return clean, np.clip(clean + rng.normal(0, 0.3, shape), -1, 1)


def _ssim_map_by_hand(x, y):
    """Wang et al.'s SSIM map of two [H, W] images: Gaussian window sigma 1.5 (cut at 3.5 sigma,
    reflected at the border), population covariances."""
    blur = lambda image: gaussian_filter(image, 1.5, truncate=3.5, mode="reflect")  # noqa: E731
    mean_x, mean_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mean_x**2, blur(y * y) - mean_y**2
    cov = blur(x * y) - mean_x * mean_y
    return (2 * mean_x * mean_y + C1) * (2 * cov + C2) / ((mean_x**2 + mean_y**2 + C1) * (var_x + var_y + C2))


def test_psnr_matches_the_formula_on_the_whole_image_and_a_region():
    clean, noisy = _pair()
    expected = [10 * np.log10(DATA_RANGE**2 / np.mean((a - b) ** 2)) for a, b in zip(clean, noisy)]
    np.testing.assert_allclose(psnr(clean, noisy), expected, rtol=1e-10)
    region = np.zeros(clean.shape[:3], bool)
    region[:, 4:9, 2:12] = True
    expected = [10 * np.log10(DATA_RANGE**2 / np.mean((a[r] - b[r]) ** 2)) for a, b, r in zip(clean, noisy, region)]
    np.testing.assert_allclose(psnr(clean, noisy, region), expected, rtol=1e-10)


def test_psnr_of_identical_pixels_is_infinite_and_of_an_empty_region_nan():
    clean, noisy = _pair(shape=(2, 16, 16, 1))
    assert np.all(np.isinf(psnr(clean, clean)))
    region = np.zeros(clean.shape[:3], bool)
    region[0, :4] = True
    scores = psnr(clean, noisy, region)
    assert np.isfinite(scores[0]) and np.isnan(scores[1])


def test_ssim_equals_an_independent_computation_of_wang_et_al():
    clean, noisy = _pair(shape=(2, 16, 16, 1))
    region = np.zeros(clean.shape[:3], bool)
    region[:, 5:11, 5:11] = True
    maps = [_ssim_map_by_hand(a[..., 0], b[..., 0]) for a, b in zip(clean, noisy)]
    np.testing.assert_allclose(ssim(clean, noisy), [m.mean() for m in maps], atol=1e-10)
    np.testing.assert_allclose(ssim(clean, noisy, region), [m[r].mean() for m, r in zip(maps, region)], atol=1e-10)
    assert np.all(ssim(clean, noisy) < 0.9)


def test_ssim_of_identical_images_is_one_and_of_constant_images_the_luminance_term():
    clean, _ = _pair(shape=(2, 16, 16, 3))
    np.testing.assert_allclose(ssim(clean, clean), 1.0, atol=1e-12)
    a, b = 0.2, -0.4
    constant_a, constant_b = np.full((1, 16, 16, 1), a), np.full((1, 16, 16, 1), b)
    # Constant images have no variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1) at every pixel.
    np.testing.assert_allclose(ssim(constant_a, constant_b), (2 * a * b + C1) / (a * a + b * b + C1), rtol=1e-10)


def test_ssim_of_a_region_sees_only_changes_within_its_windows_reach():
    clean, _ = _pair(shape=(1, 28, 28, 1))
    changed = clean.copy()
    changed[:, :, 20:] = -clean[:, :, 20:]
    left = np.zeros((1, 28, 28), bool)
    left[:, :, :8] = True  # its windows reach column 12 at most
    np.testing.assert_allclose(ssim(clean, changed, left), 1.0, atol=1e-12)
    right = ~left
    assert ssim(clean, changed, right)[0] < ssim(clean, changed)[0] < 1.0


def test_image_quality_and_summarize():
    clean, noisy = _pair()
    region = np.ones(clean.shape[:3], bool)
    scores = image_quality(clean, noisy, region)
    assert set(scores) == {"psnr", "ssim", "psnr_region", "ssim_region"}
    np.testing.assert_allclose(scores["psnr"], scores["psnr_region"])
    np.testing.assert_allclose(scores["ssim"], scores["ssim_region"])
    summary = summarize([1.0, 3.0, np.nan])
    assert summary == {"mean": 2.0, "std": 1.0, "count": 2}


def test_bad_inputs_name_the_problem():
    clean, noisy = _pair()
    with pytest.raises(ValueError, match="one shape"):
        psnr(clean, noisy[:2])
    with pytest.raises(ValueError, match=r"region has shape"):
        ssim(clean, noisy, np.ones((3, 16, 16, 1), bool))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(clean[:, :8, :8], noisy[:, :8, :8])
