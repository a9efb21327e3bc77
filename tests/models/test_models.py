import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.models import Discriminator, Generator, Upsample, depth_to_space, space_to_depth
from ganjax.models.layers import num_upsamplings


def test_depth_to_space_inverts_space_to_depth():
    x = jax.random.normal(jax.random.key(0), (2, 6, 4, 3))
    np.testing.assert_array_equal(depth_to_space(space_to_depth(x)), x)
    assert space_to_depth(x).shape == (2, 3, 2, 12)


def test_depth_to_space_places_channels_as_pixels():
    x = jnp.arange(4.0).reshape(1, 1, 1, 4)
    np.testing.assert_array_equal(depth_to_space(x)[0, :, :, 0], [[0, 1], [2, 3]])


@pytest.mark.parametrize("size,expected", [(16, (2, 4)), (28, (2, 7)), (32, (3, 4)), (64, (4, 4))])
def test_num_upsamplings(size, expected):
    assert num_upsamplings(size) == expected


def test_bad_image_size_raises():
    with pytest.raises(ValueError, match="image_size 7"):
        num_upsamplings(7)


@pytest.mark.parametrize("size,channels", [(16, 1), (28, 1), (32, 3)])
@pytest.mark.parametrize("upsample", ["subpixel", "transpose"])
def test_generator_and_discriminator_shapes(size, channels, upsample):
    generator = Generator(num_classes=10, image_size=size, channels=channels, width=8, embed_dim=4, upsample=upsample)
    discriminator = Discriminator(num_classes=10, width=8)
    noise, labels = jnp.ones((3, 16)), jnp.array([0, 4, 9])
    variables = generator.init(jax.random.key(0), noise, labels, train=False)
    images = generator.apply(variables, noise, labels, train=False)
    assert images.shape == (3, size, size, channels)
    assert float(jnp.max(jnp.abs(images))) <= 1.0
    d_variables = discriminator.init(jax.random.key(1), images, labels)
    assert discriminator.apply(d_variables, images, labels).shape == (3,)


def test_generator_depends_on_label():
    generator = Generator(num_classes=4, image_size=16, channels=1, width=8, norm="group")
    noise = jnp.ones((2, 8))
    variables = generator.init(jax.random.key(0), noise, jnp.array([0, 1]), train=False)
    images = generator.apply(variables, noise, jnp.array([0, 1]), train=False)
    assert float(jnp.max(jnp.abs(images[0] - images[1]))) > 1e-4


def test_projection_discriminator_uses_label():
    discriminator = Discriminator(num_classes=3, width=8)
    images = jnp.ones((2, 16, 16, 1))
    variables = discriminator.init(jax.random.key(0), images, jnp.array([0, 1]))
    logits = discriminator.apply(variables, images, jnp.array([0, 1]))
    assert float(jnp.abs(logits[0] - logits[1])) > 1e-6


def test_unknown_upsample_mode():
    with pytest.raises(ValueError, match="subpixel"):
        Upsample(4, mode="nearest").init(jax.random.key(0), jnp.ones((1, 2, 2, 1)))
