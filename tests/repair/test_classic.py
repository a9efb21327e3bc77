import jax
import numpy as np
import pytest

from ganjax.repair import repair
from ganjax.repair.classic import (
    biharmonic_inpaint,
    classic_repair,
    mean_fill,
    median_denoise,
    no_repair,
    tv_denoise,
)
from ganjax.repair.damage import damage


def _ramps(count=2, side=16):
    """Linear ramps [count, side, side, 3]: each channel slopes another way."""
    rows, columns = np.meshgrid(np.linspace(-0.8, 0.8, side), np.linspace(-0.8, 0.8, side), indexing="ij")
    image = np.stack([rows, columns, 0.5 * (rows - columns)], axis=-1)
    return np.repeat(image[None], count, axis=0).astype(np.float32)


def _centre_hole(images):
    damaged, mask = damage("centre:0.5", jax.random.key(0), images)
    return np.asarray(damaged), np.asarray(mask)


def test_none_returns_the_damaged_images():
    damaged, mask = _centre_hole(_ramps())
    np.testing.assert_array_equal(no_repair(damaged, mask), damaged)


def test_mean_fill_fills_each_image_and_channel_with_its_known_mean():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (3, 16, 16, 2)).astype(np.float32)
    damaged, mask = (np.asarray(part) for part in damage("pixels:0.6", jax.random.key(1), images))
    filled = mean_fill(damaged, mask)
    known = mask.astype(bool)
    np.testing.assert_array_equal(filled[known], damaged[known])
    for index in range(3):
        for channel in range(2):
            expected = images[index, ..., channel][known[index]].mean()
            np.testing.assert_allclose(filled[index, ..., channel][~known[index]], expected, rtol=1e-5)


def test_biharmonic_fills_a_ramp_nearly_exactly_and_keeps_known_pixels():
    ramps = _ramps()
    damaged, mask = _centre_hole(ramps)
    repaired = biharmonic_inpaint(damaged, mask)
    known = mask.astype(bool)
    np.testing.assert_array_equal(repaired[known], damaged[known])
    assert np.abs(repaired - ramps).max() < 1e-3
    assert np.abs(damaged - ramps).max() > 0.3


def test_tv_denoising_lowers_the_error_on_a_noisy_constant_image():
    constant = np.full((2, 16, 16, 1), 0.2, np.float32)
    noisy, mask = damage("noise:0.1", jax.random.key(2), constant)
    denoised = classic_repair(noisy, mask, "noise:0.1")
    np.testing.assert_array_equal(denoised, tv_denoise(noisy))
    error = lambda images: np.sqrt(np.mean((images - constant) ** 2))  # noqa: E731
    assert error(denoised) < 0.5 * error(np.asarray(noisy))


def test_median_filter_removes_salt_and_pepper_from_a_constant_image():
    constant = np.full((2, 16, 16, 1), -0.3, np.float32)
    noisy, mask = damage("saltpepper:0.1", jax.random.key(3), constant)
    repaired = classic_repair(noisy, mask, "saltpepper:0.1")
    np.testing.assert_array_equal(repaired, median_denoise(noisy))
    assert np.mean(repaired != constant) < 0.2 * np.mean(np.asarray(noisy) != constant)


def test_an_image_with_every_pixel_missing_is_refused():
    images = _ramps()
    mask = np.ones(images.shape[:3], np.float32)
    mask[1] = 0
    for method in ("mean", "classic"):
        with pytest.raises(ValueError, match=r"1 image\(s\) \(index 1\) have every pixel missing.*from nothing"):
            repair(method, images, mask, jax.random.key(0), damage="centre:0.5")


def test_repair_dispatches_and_names_bad_input():
    ramps = _ramps()
    damaged, mask = _centre_hole(ramps)
    np.testing.assert_array_equal(repair("classic", damaged, mask, jax.random.key(0), damage="centre:0.5"),
                                  biharmonic_inpaint(damaged, mask))
    np.testing.assert_array_equal(repair("mean", damaged, mask, jax.random.key(0), damage="centre:0.5"),
                                  mean_fill(damaged, mask))
    with pytest.raises(ValueError, match=r"Repair method 'magic' is unknown; choose one of none, mean, classic"):
        repair("magic", damaged, mask, jax.random.key(0), damage="centre:0.5")
    with pytest.raises(ValueError, match=r"needs a generator: pass generator=ganjax.load_generator"):
        repair("inversion", damaged, mask, jax.random.key(0), damage="centre:0.5")
    with pytest.raises(ValueError, match=r"mask has shape \(2, 16, 8\)"):
        repair("mean", damaged, mask[:, :, :8], jax.random.key(0), damage="centre:0.5")
    with pytest.raises(ValueError, match="severity"):
        repair("classic", damaged, mask, jax.random.key(0), damage="centre:2")
