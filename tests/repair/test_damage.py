import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_python
from ganjax.names import DAMAGES, NOISE_DAMAGES, parse_damage
from ganjax.repair.damage import (
    DAMAGE_FUNCTIONS,
    MISSING_VALUE,
    check_images_and_mask,
    damage,
    damage_function,
    damaged_region,
)

# Most tests damage _images() with these specs, so that each compiles once.
MASK_DAMAGES = ("centre:0.5", "blocks:0.25", "pixels:0.5", "half:left")
RANDOM_DAMAGES = ("blocks:0.25", "pixels:0.5", "noise:0.3", "saltpepper:0.2")


def _images(count=4, side=16, channels=3, seed=0):
    return jax.random.uniform(jax.random.key(seed), (count, side, side, channels), minval=-1.0, maxval=1.0)


def test_parse_damage_reads_names_and_severities():
    assert parse_damage("centre:0.5") == ("centre", 0.5)
    assert parse_damage(" noise : 0.3 ") == ("noise", 0.3)
    assert parse_damage("half:top") == ("half", "top")
    assert set(DAMAGES) == set(DAMAGE_FUNCTIONS)


@pytest.mark.parametrize("spec, message", [
    ("blur:0.5", r"unknown; write NAME:SEVERITY with NAME one of centre, blocks"),
    ("centre", r"has no severity; write centre:SEVERITY .* e.g. centre:0.5"),
    ("centre:1.5", r"severity '1.5' is not a number strictly between 0 and 1; centre's severity is the side"),
    ("pixels:0", r"strictly between 0 and 1"),
    ("noise:-0.1", r"strictly between 0 and 1"),
    ("saltpepper:1", r"strictly between 0 and 1"),
    ("blocks:lots", r"'lots' is not a number"),
    ("half:middle", r"one of left, right, top, bottom, e.g. half:left"),
])
def test_bad_damage_names_and_severities_raise_naming_the_fix(spec, message):
    with pytest.raises(ValueError, match=message):
        damage(spec, jax.random.key(0), _images())


def test_names_are_readable_without_jax():
    result = run_python("import sys, ganjax.names as n; n.parse_damage('centre:0.5'); "
                        "assert 'jax' not in sys.modules, 'ganjax.names imports jax'; print(n.REPAIR_METHODS)")
    assert result.returncode == 0, result.stderr
    assert "inversion" in result.stdout


@pytest.mark.parametrize("side, severity", [(16, 0.5), (28, 0.3)])
def test_centre_block_is_centred_with_side_severity_times_side(side, severity):
    _, mask = damage(f"centre:{severity}", jax.random.key(0), _images(2, side))
    mask = np.asarray(mask)
    block = round(severity * side)
    start = (side - block) // 2
    expected = np.ones((side, side))
    expected[start:start + block, start:start + block] = 0
    np.testing.assert_array_equal(mask[0], expected)
    np.testing.assert_array_equal(mask[1], expected)


@pytest.mark.parametrize("spec", MASK_DAMAGES)
def test_mask_damages_keep_known_pixels_and_blank_missing_ones(spec):
    images = _images()
    damaged, mask = damage(spec, jax.random.key(1), images)
    known = np.asarray(mask, bool)
    assert mask.shape == images.shape[:3] and damaged.shape == images.shape
    assert 0 < known.sum() < known.size
    np.testing.assert_array_equal(np.asarray(damaged)[known], np.asarray(images)[known])
    assert np.all(np.asarray(damaged)[~known] == MISSING_VALUE)


@pytest.mark.parametrize("spec", ["centre:0.99", "blocks:0.99", "pixels:0.999", "pixels:0.001"])
def test_extreme_severities_leave_each_image_a_known_and_a_missing_pixel(spec):
    _, mask = damage(spec, jax.random.key(0), _images())
    known = np.asarray(mask).reshape(4, -1).sum(axis=1)
    assert np.all(known >= 1) and np.all(known <= 255), known


def test_missing_pixels_takes_the_severity_fraction_of_each_image_at_random():
    _, mask = damage("pixels:0.5", jax.random.key(2), _images())
    mask = np.asarray(mask)
    np.testing.assert_array_equal(1.0 - mask.mean(axis=(1, 2)), 128 / 256)
    assert len({mask[index].tobytes() for index in range(4)}) == 4


def test_random_blocks_drop_whole_grid_cells_in_the_severity_fraction():
    _, mask = damage("blocks:0.25", jax.random.key(3), _images())
    mask = np.asarray(mask)
    cells = mask.reshape(4, 4, 4, 4, 4)  # [image, cell row, pixel row, cell column, pixel column]
    assert np.all(cells.min(axis=(2, 4)) == cells.max(axis=(2, 4))), "a cell is partly missing"
    np.testing.assert_array_equal(1.0 - mask.mean(axis=(1, 2)), 4 / 16)


@pytest.mark.parametrize("side, missing", [
    ("left", np.s_[:, :, :8]), ("right", np.s_[:, :, 8:]), ("top", np.s_[:, :8, :]), ("bottom", np.s_[:, 8:, :]),
])
def test_missing_half_is_that_half(side, missing):
    _, mask = damage(f"half:{side}", jax.random.key(0), _images())
    expected = np.ones((4, 16, 16))
    expected[missing] = 0
    np.testing.assert_array_equal(mask, expected)


def test_gaussian_noise_has_twice_the_severity_as_std_on_the_model_scale():
    grey = jnp.zeros((16, 16, 16, 3))
    noisy, mask = damage("noise:0.1", jax.random.key(4), grey)
    noise = np.asarray(noisy)
    assert abs(noise.std() - 0.2) < 0.005 and abs(noise.mean()) < 0.005
    np.testing.assert_array_equal(mask, 1.0)
    clipped, _ = damage("noise:0.3", jax.random.key(4), _images())
    assert float(jnp.max(jnp.abs(clipped))) == 1.0


def test_salt_and_pepper_hits_the_severity_fraction_with_white_and_black():
    images = np.asarray(_images())
    damaged, mask = damage("saltpepper:0.2", jax.random.key(5), images)
    damaged = np.asarray(damaged)
    hit = np.any(damaged != images, axis=-1)
    assert abs(hit.mean() - 0.2) < 0.04  # 1024 pixels: 3 standard deviations
    assert set(np.unique(damaged[hit])) == {-1.0, 1.0}
    assert np.all(damaged[hit] == damaged[hit][:, :1]), "a hit pixel's channels differ"
    assert abs((damaged[hit][:, 0] == 1.0).mean() - 0.5) < 0.1
    np.testing.assert_array_equal(mask, 1.0)


@pytest.mark.parametrize("spec", RANDOM_DAMAGES)
def test_random_damages_are_deterministic_per_key_and_differ_across_keys(spec):
    images = _images()
    first = damage(spec, jax.random.key(7), images)
    again = damage(spec, jax.random.key(7), images)
    other = damage(spec, jax.random.key(8), images)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_damage_functions_jit_and_vmap():
    images = _images()
    function = damage_function("pixels:0.5")
    keys = jax.random.split(jax.random.key(0), 3)
    damaged, masks = jax.jit(jax.vmap(function, in_axes=(0, None)))(keys, images)
    assert damaged.shape == (3, 4, 16, 16, 3) and masks.shape == (3, 4, 16, 16)
    np.testing.assert_array_equal(masks[1], function(keys[1], images)[1])


def test_damaged_region_is_the_missing_pixels_or_the_whole_image_for_noise():
    for spec in ("centre:0.5", "noise:0.3", "saltpepper:0.2"):
        _, mask = damage(spec, jax.random.key(0), _images())
        region = damaged_region(spec, mask)
        expected = np.ones(mask.shape, bool) if parse_damage(spec)[0] in NOISE_DAMAGES else np.asarray(mask) == 0
        np.testing.assert_array_equal(region, expected)


def test_check_images_and_mask_names_a_mask_of_another_shape():
    images = np.zeros((2, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match=r"mask has shape \(2, 8, 8\) but the images \(2, 16, 16, 1\)"):
        check_images_and_mask(images, np.ones((2, 8, 8)))
    with pytest.raises(ValueError, match=r"drop its channel axis"):
        check_images_and_mask(images, np.ones((2, 16, 16, 1)))
    with pytest.raises(ValueError, match="only 0 .* and 1"):
        check_images_and_mask(images, np.full((2, 16, 16), 0.5))
