import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.augment import Augmentation, augment, check_augmentation


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
