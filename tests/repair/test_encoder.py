"""The encoder warm start (ganjax.repair.encoder) and inpaint's initial_latents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ganjax.repair import inpaint
from ganjax.repair.damage import damage
from ganjax.repair.encoder import encode, train_encoder
from ganjax.sample import load_generator
from ganjax.state import generator_source


@pytest.fixture(scope="module")
def generator(tiny_gan_workdir):
    return load_generator(tiny_gan_workdir)


@pytest.fixture(scope="module")
def truth(generator):
    """(latents [4, Z], labels [4], images G(z, y) [4, 16, 16, 1]) of the tiny generator."""
    source = generator_source(generator.state, generator.use_ema)
    latents = jax.random.normal(jax.random.key(3), (4, generator.config.model.noise_dim))
    labels = jnp.array([1, 4, 6, 9], jnp.int32)
    images = source.generator_apply({"params": source.generator_params, "batch_stats": source.generator_batch_stats},
                                    latents, labels, train=False)
    return np.asarray(latents), np.asarray(labels), np.asarray(images)


def test_encoder_learns_to_invert_the_generator_under_damage(generator):
    state, losses = train_encoder(generator, jax.random.key(0), damages=("centre:0.5",), steps=150, batch_size=32,
                                  width=8, learning_rate=3e-3)
    assert losses.shape == (150,)
    assert np.mean(losses[-20:]) < 0.6 * np.mean(losses[:5]), (losses[:5], losses[-20:])
    source = generator_source(generator.state, generator.use_ema)
    latents = jax.random.normal(jax.random.key(9), (64, generator.config.model.noise_dim))
    images = source.generator_apply({"params": source.generator_params, "batch_stats": source.generator_batch_stats},
                                    latents, jnp.arange(64) % 10, train=False)
    encoded = encode(state, images, batch_size=24)  # chunks of 24, the last padded
    assert encoded.shape == latents.shape
    np.testing.assert_allclose(encoded[:24], encode(state, images[:24]), rtol=1e-5, atol=1e-5)
    # Better than guessing the prior's mean (0) for every latent: a mean squared error below 1.
    assert np.mean((encoded - np.asarray(latents)) ** 2) < 0.9


def test_inversion_starts_at_the_given_latents(generator, truth):
    latents, labels, images = truth
    damaged, mask = damage("centre:0.5", jax.random.key(1), images)
    settings = {"labels": labels, "steps": 1, "restarts": 1, "learning_rate": 1e-6}
    warm = inpaint(generator, damaged, mask, jax.random.key(2), initial_latents=latents, **settings)
    cold = inpaint(generator, damaged, mask, jax.random.key(2), **settings)
    hole = np.broadcast_to((np.asarray(mask) == 0)[..., None], images.shape)
    warm_error = np.abs(warm.images - images)[hole].max()
    assert warm_error < 1e-3, warm_error  # the truth's own latent: the fill is the truth
    assert np.abs(cold.images - images)[hole].max() > 10 * warm_error
    np.testing.assert_allclose(warm.latents, latents, atol=1e-4)
    with pytest.raises(ValueError, match=r"initial_latents must be \[N, Z\] = \(4, 16\)"):
        inpaint(generator, damaged, mask, jax.random.key(2), initial_latents=latents[:, :3], **settings)
