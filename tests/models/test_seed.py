"""The seed example's networks (ganjax.models.seed) and the unconditional mode of every GAN architecture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.config import default_config
from ganjax.models import SeedDiscriminator, SeedGenerator
from ganjax.state import build_models


def _shapes(params):
    return {"/".join(key.key for key in path): leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def _count(params):
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def test_seed_generator_is_the_128_128_784_mlp():
    generator = SeedGenerator(num_classes=10, image_size=28, channels=1, width=128, conditional=False)
    noise, labels = jax.random.normal(jax.random.key(0), (3, 100)), jnp.zeros((3,), jnp.int32)
    variables = generator.init(jax.random.key(1), noise, labels, train=False)
    assert _shapes(variables["params"]) == {
        "Dense_0/kernel": (100, 128), "Dense_0/bias": (128,),
        "Dense_1/kernel": (128, 128), "Dense_1/bias": (128,),
        "Dense_2/kernel": (128, 784), "Dense_2/bias": (784,),
    }
    assert _count(variables["params"]) == 100 * 128 + 128 + 128 * 128 + 128 + 128 * 784 + 784
    assert "batch_stats" not in variables  # norm "none": the seed's plain MLP
    images = generator.apply(variables, noise, labels, train=False)
    assert images.shape == (3, 28, 28, 1) and float(jnp.max(jnp.abs(images))) <= 1.0


def test_seed_discriminator_is_two_strided_convolutions_and_a_linear_logit():
    discriminator = SeedDiscriminator(num_classes=10, width=32, downsample="strided", conditional=False)
    images, labels = jnp.zeros((3, 28, 28, 1)), jnp.zeros((3,), jnp.int32)
    params = discriminator.init(jax.random.key(0), images, labels)["params"]
    # Two 4x4 convolutions, 28 -> 14 -> 7 (stride 2 each), so the flattened features are 7 * 7 * 64.
    assert _shapes(params) == {
        "Downsample_0/Conv_0/kernel": (4, 4, 1, 32), "Downsample_0/Conv_0/bias": (32,),
        "Downsample_1/Conv_0/kernel": (4, 4, 32, 64), "Downsample_1/Conv_0/bias": (64,),
        "Dense_0/kernel": (7 * 7 * 64, 1), "Dense_0/bias": (1,),
    }
    assert _count(params) == 36513
    assert discriminator.apply({"params": params}, images, labels).shape == (3,)


def test_seed_discriminator_with_subpixel_downsampling_needs_a_size_divisible_by_4():
    discriminator = SeedDiscriminator(num_classes=10, downsample="subpixel")
    with pytest.raises(ValueError, match="divisible by 4, got 18.*strided"):
        discriminator.init(jax.random.key(0), jnp.zeros((2, 18, 18, 1)), jnp.zeros((2,), jnp.int32))


def _networks(architecture, conditional):
    config = default_config()
    config.model.architecture, config.model.conditional = architecture, conditional
    config.model.generator_width, config.model.discriminator_width, config.model.embed_dim = 8, 8, 4
    config.model.generator_norm = "none"  # no batch statistics: G's output is a function of its input alone
    return build_models(config, 10, (16, 16, 1))


@pytest.mark.parametrize("architecture", ["dcgan", "seed_mlp"])
def test_unconditional_networks_have_no_label_parameters_and_ignore_labels(architecture):
    generator, discriminator = _networks(architecture, conditional=False)
    noise = jax.random.normal(jax.random.key(0), (4, 128))
    labels, other_labels = jnp.array([0, 1, 2, 3]), jnp.array([9, 9, 5, 0])
    g_params = generator.init(jax.random.key(1), noise, labels, train=False)["params"]
    images = generator.apply({"params": g_params}, noise, labels, train=False)
    d_params = discriminator.init(jax.random.key(2), images, labels)["params"]
    assert not [name for name in {**_shapes(g_params), **_shapes(d_params)} if "Embed" in name]
    np.testing.assert_array_equal(generator.apply({"params": g_params}, noise, other_labels, train=False), images)
    np.testing.assert_array_equal(discriminator.apply({"params": d_params}, images, other_labels),
                                  discriminator.apply({"params": d_params}, images, labels))


@pytest.mark.parametrize("architecture", ["dcgan", "seed_mlp"])
def test_conditional_networks_embed_their_labels(architecture):
    generator, discriminator = _networks(architecture, conditional=True)
    noise, labels = jnp.ones((2, 128)), jnp.array([0, 1])
    g_params = generator.init(jax.random.key(1), noise, labels, train=False)["params"]
    images = generator.apply({"params": g_params}, noise, labels, train=False)
    d_params = discriminator.init(jax.random.key(2), images, labels)["params"]
    assert "Embed_0/embedding" in _shapes(g_params) and "Embed_0/embedding" in _shapes(d_params)
    assert float(jnp.max(jnp.abs(images[0] - images[1]))) > 1e-4  # same noise, different classes
    scores = discriminator.apply({"params": d_params}, images[:1].repeat(2, 0), labels)
    assert abs(float(scores[0] - scores[1])) > 1e-6
