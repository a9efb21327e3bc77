import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.augment import Augmentation, augment, check_augmentation, diff_augment, parse_diff_augment


def _images(batch=16, size=12, channels=1, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, channels)).astype(np.float32)


@pytest.mark.parametrize("padding", ["reflect", "constant"])
def test_shape_range_and_determinism(padding):
    images = _images(channels=3)
    kind = Augmentation(max_shift=3, flip=True, padding=padding)
    step = jax.jit(augment, static_argnums=2)
    out = step(jax.random.key(0), images, kind)
    assert out.shape == images.shape and out.dtype == jnp.float32
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    np.testing.assert_array_equal(out, step(jax.random.key(0), images, kind))
    assert not np.array_equal(out, step(jax.random.key(1), images, kind))
    # Images are transformed independently: some moved, and not all the same way.
    moved = [not np.array_equal(out[i], images[i]) for i in range(len(images))]
    assert 0 < sum(moved) <= len(images)


def test_shift_is_a_translation_with_constant_border():
    images = np.full((64, 8, 8, 1), 0.5, np.float32)
    out = np.asarray(augment(jax.random.key(3), images, Augmentation(max_shift=2, flip=False, padding="constant")))
    # Every output pixel is either the image (0.5) or the -1 padding, and -1 only at the border.
    assert set(np.unique(out)) <= {0.5, -1.0}
    assert np.all(out[:, 2:6, 2:6] == 0.5)
    assert np.any(out == -1.0)


def test_flips_are_off_when_disabled_and_mirror_when_enabled():
    images = _images(batch=64)
    unchanged = augment(jax.random.key(0), images, Augmentation(max_shift=0, flip=False))
    np.testing.assert_array_equal(unchanged, images)
    flipped = np.asarray(augment(jax.random.key(0), images, Augmentation(max_shift=0, flip=True)))
    mirrored = [np.array_equal(flipped[i], images[i, :, ::-1]) for i in range(64)]
    kept = [np.array_equal(flipped[i], images[i]) for i in range(64)]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert 16 < sum(mirrored) < 48  # about half


def test_bad_augmentation_is_rejected():
    with pytest.raises(ValueError, match="padding 'wrap'"):
        check_augmentation(Augmentation(2, False, "wrap"))
    with pytest.raises(ValueError, match="max_shift"):
        check_augmentation(Augmentation(-1, False, "constant"))


def test_diff_augment_off_is_the_identity_and_on_is_random_per_image():
    images = jnp.asarray(_images(batch=32, size=16))
    np.testing.assert_array_equal(diff_augment(jax.random.key(0), images, ()), images)
    ops = parse_diff_augment("color,translation,cutout")
    jitted = jax.jit(diff_augment, static_argnums=2)
    out = jitted(jax.random.key(0), images, ops)
    assert out.shape == images.shape
    np.testing.assert_allclose(out, diff_augment(jax.random.key(0), images, ops), atol=1e-6)
    assert not np.allclose(out, jitted(jax.random.key(1), images, ops))
    # Per-image parameters: the mean change differs from image to image.
    changes = np.asarray(jnp.mean(out - images, axis=(1, 2, 3)))
    assert np.std(changes) > 1e-3


def test_diff_augment_translation_and_cutout_do_what_they_say():
    images = jnp.full((64, 16, 16, 1), 0.5, jnp.float32)
    shifted = np.asarray(diff_augment(jax.random.key(3), images, ("translation",)))
    # Shifts of up to 16/8 = 2 pixels, zero-filled: the centre is untouched, the border is 0.5 or 0.
    assert set(np.unique(shifted)) <= {0.5, 0.0}
    assert np.all(shifted[:, 2:14, 2:14] == 0.5) and np.any(shifted == 0.0)
    cut = np.asarray(diff_augment(jax.random.key(4), images, ("cutout",)))
    zeros = (cut == 0.0).sum(axis=(1, 2, 3))
    assert set(np.unique(cut)) <= {0.5, 0.0}
    assert zeros.max() == 8 * 8 and zeros.min() >= 4 * 4  # an 8x8 square, clipped at the border
    assert np.all(np.abs(np.mean(shifted, axis=(1, 2, 3))) <= 0.5)


def test_diff_augment_color_keeps_grayscale_images_grayscale_and_passes_gradients():
    images = jnp.asarray(_images(batch=8, size=8))
    out = diff_augment(jax.random.key(5), images, ("color",))
    assert out.shape == images.shape  # one channel: saturation is skipped
    def total(x, ops):
        return jnp.sum(diff_augment(jax.random.key(6), x, ops) ** 2)

    assert float(jnp.max(jnp.abs(jax.grad(total)(images, ("color", "translation", "cutout"))))) > 0
    # Without colour (whose image mean couples all pixels), pixels cut out or shifted away get
    # no gradient and the rest do.
    grads = jax.grad(total)(images, ("translation", "cutout"))
    assert 0 < float(jnp.mean(grads != 0)) < 1


def test_unknown_diff_augment_transform_is_named():
    assert parse_diff_augment(" cutout, color ") == ("color", "cutout")  # applied in the paper's order
    with pytest.raises(ValueError, match="'rotate'.*gan.diffaugment"):
        parse_diff_augment("color,rotate")
